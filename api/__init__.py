"""The HTTP API (`mani serve`): a starlette app over `backend/`."""
