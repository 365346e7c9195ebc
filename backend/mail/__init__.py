"""Mail itself: composing MIME, rendering templates, the email providers and their rate limits."""
