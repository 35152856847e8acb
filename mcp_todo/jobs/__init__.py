"""Periodic jobs, run on a clock rather than on an event: the reminder scheduler and the trash's purge."""
