"""Jobs: CSV and Job JSON intake, preview, creating a job, admin actions, and the one read side."""
