"""Cloud offload (`cloud_mode = sqs | api_gateway`): what mani hands to a company's own AWS
worker, and the worker's side of it, on mani's own core.

- `job_message`: the seeds' Job JSON, one message per batch, with the claim-check pointer for
  a batch too big for a queue message;
- `handoff_crypto`: temporary passwords sealed for the worker (never plain text in a message);
- `worker`: one batch message run by the worker: certificates, mail, the signed callback.

Nothing here imports boto3 at module level or touches the database: the Lambda worker
(`cloud_workers/aws/lambda_handler.py`) imports this package without mani's store.
"""
