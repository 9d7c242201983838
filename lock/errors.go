package lock

import "errors"

// ErrLocked is returned by TryLock and TryRLock when someone else holds
// the lock, or waits for it ahead of the caller.
var ErrLocked = errors.New("lock: locked elsewhere")

// ErrNotHeld is returned by Unlock and RUnlock when the value holds no
// lock (of that kind): it never locked, or already unlocked.
var ErrNotHeld = errors.New("lock: not held")

// ErrHeld is returned by Lock, TryLock, RLock and TryRLock when the value
// already holds its lock or is already waiting for it. A distributed lock
// is not reentrant; waiting for it again would wait forever.
var ErrHeld = errors.New("lock: already held or being acquired by this value")

// ErrLost is wrapped by the errors of Lock, Unlock and Do when the lock,
// or the caller's place in its queue, was taken away: its key was deleted
// by someone else or went with the session's lease. When the session
// ended, the error also wraps session.ErrExpired or session.ErrClosed.
var ErrLost = errors.New("lock: lost")

// ErrInvalid is wrapped by the errors of every call on a value made with
// bad arguments: a nil session, an empty, oversized or invalid-UTF-8 name,
// or (for NewMulti) no names or more than MaxMultiNames.
var ErrInvalid = errors.New("lock: invalid argument")

// errNilSession is what every call on a value made with a nil session
// returns.
var errNilSession = errors.Join(ErrInvalid, errors.New("nil session"))
