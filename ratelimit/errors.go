package ratelimit

import "errors"

// ErrInvalid is wrapped by the errors for bad arguments: a nil session, a
// name that is empty, over 512 bytes or not UTF-8, a limit of fewer than
// one event or over a non-positive interval, a burst below 1 or above the
// limit, a request for fewer than one event, a negative clock skew or
// horizon, or a skew the interval cannot absorb.
var ErrInvalid = errors.New("ratelimit: invalid argument")

// ErrTooLarge is returned by Wait, Allow and Reserve for a request of
// more events than the burst: no instant can ever grant it. A waiting
// request gets it when SetBurst lowers the burst below it.
var ErrTooLarge = errors.New("ratelimit: request exceeds burst")

// ErrLimitMismatch is returned when the limiter stored in etcd was created
// with another limit, burst or clock skew than the ones given to New, and
// SetLimit or SetBurst has not changed it since: two deployments that
// disagree about a limit are a bug to surface, not to paper over.
var ErrLimitMismatch = errors.New("ratelimit: limit mismatch")
