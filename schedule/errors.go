package schedule

import "errors"

// ErrInvalid is wrapped by the errors returned for bad arguments: a nil
// client, session or fn, an empty, oversized or non-UTF-8 name, a bad
// option value, or a session under another root prefix than the schedule.
var ErrInvalid = errors.New("schedule: invalid argument")

// ErrInvalidSpec is wrapped by the errors returned for a spec that cannot
// be scheduled: an interval that is zero, negative or under a
// millisecond, a cron expression that does not parse or never fires, or
// an "@every" descriptor (whose ticks depend on when each replica
// started; use Every).
var ErrInvalidSpec = errors.New("schedule: invalid spec")

// ErrUnknownTimeZone is wrapped by the errors returned for a time zone
// (CRON_TZ= in a cron expression, or WithTimeZone) that the system's time
// zone database does not know.
var ErrUnknownTimeZone = errors.New("schedule: unknown time zone")

// ErrNotFound is returned by Pause, Resume, Trigger and Status for a
// schedule that no replica ever ran: there is nothing to pause or
// trigger, and a typo in a name must not create a schedule.
var ErrNotFound = errors.New("schedule: no such schedule")
