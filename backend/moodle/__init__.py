"""Talking with Moodle: signed callbacks out, worker callbacks in, API tokens, provider webhooks."""
