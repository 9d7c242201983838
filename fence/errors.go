package fence

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrStale is wrapped by every refusal of a stale token: one older than
// the highest already seen for its resource. The error is a *StaleError,
// which says by how much.
var ErrStale = errors.New("fence: stale token")

// ErrInvalid is wrapped by the errors for bad input: a token that is zero
// or negative (a holder that holds nothing has token 0), a resource name
// that is empty, over MaxResource bytes or not UTF-8, a bad table name, a
// nil database or client.
var ErrInvalid = errors.New("fence: invalid argument")

// ErrNoTable is returned by Check and Highest when the fence table does
// not exist: create it with Table.Create (or the DDL in the package
// documentation) before the first fenced write.
var ErrNoTable = errors.New("fence: table missing")

// ErrUnavailable is wrapped when the store of highest tokens could not be
// read or written, so whether a token is stale is unknown: the write is
// refused all the same (a fence fails closed).
var ErrUnavailable = errors.New("fence: store unavailable")

// MaxResource is the longest resource name, in bytes (the fence table's
// resource column is VARCHAR(512)).
const MaxResource = 512

// StaleError is the refusal of a stale token: Token is older than
// Highest, which a newer holder of Resource has used already.
type StaleError struct {
	Resource string
	Token    int64
	Highest  int64
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("fence: resource %q: token %d is older than %d, already seen: stale write refused", e.Resource, e.Token, e.Highest)
}

// Is makes errors.Is(err, ErrStale) hold.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// valid reports why resource and token cannot be fenced.
func valid(resource string, token int64) error {
	switch {
	case token <= 0:
		return fmt.Errorf("%w: token %d (a holder's token is positive; 0 means nothing is held)", ErrInvalid, token)
	case resource == "":
		return fmt.Errorf("%w: empty resource name", ErrInvalid)
	case len(resource) > MaxResource:
		return fmt.Errorf("%w: resource name of %d bytes, over %d", ErrInvalid, len(resource), MaxResource)
	case !utf8.ValidString(resource):
		return fmt.Errorf("%w: resource name %q is not valid UTF-8", ErrInvalid, resource)
	}
	return nil
}
