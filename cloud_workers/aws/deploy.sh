#!/usr/bin/env bash
# Build mani's Lambda worker and deploy its stack.
#
#   cloud_workers/aws/deploy.sh STAGE REGION [--package-only]
#
# Builds cloud_workers/aws/dist/mani-lambda.zip (the handler, the part of mani's core it imports,
# and manylinux2014 x86_64 / cp311 wheels of what Lambda's python3.11 runtime lacks). Without
# --package-only it then uploads the zip and creates or updates the stack `mani-STAGE` with the
# AWS CLI, and prints the settings to give the company in mani.
#
# A first deployment needs these in the environment (an update keeps the stack's values):
#   MANI_CALLBACK_SECRET   the company's cloud_callback_secret in mani (at least 16 characters)
#   MANI_SENDER_ADDRESS    the From address, a verified SES identity (or in a verified domain)
#   MANI_ALARM_EMAIL       who gets the CloudWatch alarms
# Optional: MANI_CODE_BUCKET (default mani-lambda-code-ACCOUNT-REGION, created if missing),
#   MANI_STACK_PARAMETERS  more Key=Value overrides, e.g. "FunctionMemory=1024 MaximumConcurrency=4"
#   PYTHON                 a Python 3.11 with pip and mani installed (default: .venv/bin/python, python3.11)
set -euo pipefail

usage() { echo "usage: $0 STAGE REGION [--package-only]" >&2; exit 2; }
[ $# -ge 2 ] || usage
STAGE=$1 REGION=$2 PACKAGE_ONLY=0
[ "${3:-}" = "--package-only" ] && PACKAGE_ONLY=1
[ $# -le 3 ] || usage
[[ $STAGE =~ ^[a-z0-9-]{1,20}$ ]] || { echo "error: STAGE must be 1-20 of a-z, 0-9 and -." >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=$(command -v python3.11); fi
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "error: $PYTHON is not Python 3.11 (the zip's .pyc files and wheels are for Lambda's python3.11)." >&2; exit 1; }

BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
echo "== wheels for Lambda (manylinux2014_x86_64, cp311)" >&2
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile --target "$BUILD/deps" \
  --platform manylinux2014_x86_64 --implementation cp --python-version 3.11 --only-binary=:all: \
  -r "$HERE/requirements.txt"
echo "== zip" >&2
ZIP=$HERE/dist/mani-lambda.zip
"$PYTHON" "$HERE/package.py" --deps "$BUILD/deps" --out "$ZIP" >&2
echo "$ZIP ($(du -h "$ZIP" | cut -f1))"
[ $PACKAGE_ONLY = 1 ] && exit 0

command -v aws >/dev/null || { echo "error: the AWS CLI (aws) is needed to deploy; --package-only builds the zip alone." >&2; exit 1; }
ACCOUNT=$(aws sts get-caller-identity --query Account --output text --region "$REGION")
BUCKET=${MANI_CODE_BUCKET:-mani-lambda-code-$ACCOUNT-$REGION}
if ! aws s3api head-bucket --bucket "$BUCKET" --region "$REGION" 2>/dev/null; then
  echo "== creating the code bucket $BUCKET" >&2
  aws s3 mb "s3://$BUCKET" --region "$REGION" >&2
  aws s3api put-public-access-block --bucket "$BUCKET" --region "$REGION" --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
fi
# The key names the zip's content, so a changed zip is a changed function and the same zip is no change.
KEY=mani/$STAGE/mani-lambda-$(sha256sum "$ZIP" | cut -c1-16).zip
echo "== uploading s3://$BUCKET/$KEY" >&2
aws s3 cp --only-show-errors "$ZIP" "s3://$BUCKET/$KEY" --region "$REGION"

STACK=mani-$STAGE
overrides=("Stage=$STAGE" "CodeBucket=$BUCKET" "CodeKey=$KEY")
[ -n "${MANI_CALLBACK_SECRET:-}" ] && overrides+=("CallbackSecret=$MANI_CALLBACK_SECRET")
[ -n "${MANI_SENDER_ADDRESS:-}" ] && overrides+=("SenderAddress=$MANI_SENDER_ADDRESS")
[ -n "${MANI_ALARM_EMAIL:-}" ] && overrides+=("AlarmEmail=$MANI_ALARM_EMAIL")
# shellcheck disable=SC2206 # word splitting of Key=Value pairs is intended
[ -n "${MANI_STACK_PARAMETERS:-}" ] && overrides+=($MANI_STACK_PARAMETERS)
echo "== deploying stack $STACK in $REGION" >&2
aws cloudformation deploy --region "$REGION" --stack-name "$STACK" --template-file "$HERE/cloudformation.yaml" \
  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --parameter-overrides "${overrides[@]}" >&2

output() {
  aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
QUEUE=$(output JobQueueUrl)
INGEST=$(output IngestUrl)
TOKEN_ARN=$(output IngestTokenSecretArn)
cat <<SETTINGS

Stack $STACK is up. Give the company these settings in mani (COMPANY is its id):

  mani companies set COMPANY cloud_mode=sqs sqs_queue_url=$QUEUE aws_region=$REGION

or, to hand off over HTTPS instead of SQS:

  mani companies set COMPANY cloud_mode=api_gateway cloud_endpoint=$INGEST \\
      cloud_auth_token="\$(aws secretsmanager get-secret-value --region $REGION --secret-id $TOKEN_ARN --query SecretString --output text)"

The company's cloud_callback_secret must be the stack's CallbackSecret. Dead letters: $(output DeadLetterQueueUrl)
Confirm the alarm subscription mail sent to the AlarmEmail address.
SETTINGS
