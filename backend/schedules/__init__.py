"""Schedules: recurring jobs from a Moodle selection (issue 13).

    definition   ScheduleInput, check_input, windows, the selection a run reads
    recurrence   python-dateutil rrule + zoneinfo: DST-stable local times, every N days, month ends
    service      add, edit, pause, resume, remove, next run times
    runs         claim_due (conditional UPDATE on next_run_at), execute_run, run_due (the sweeper's pass)
    queries      the read side: SchedulePublic, ScheduleRunPublic
"""
