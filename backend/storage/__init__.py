"""Where files live (certificate PDFs, connection checks): local folders, S3 and Cloudflare R2."""
