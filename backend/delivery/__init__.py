"""Running jobs: dispatch, claim, send, settle, finish; routing, the sweeper, and what to enqueue."""
