// Package fault is the one set of error kinds every domain package
// returns and every API maps to an answer: not found, conflict, invalid
// input (naming its field), limit exceeded (with its numbers, see
// capacity.LimitError) and unavailable. A domain error belongs to a kind
// by wrapping its sentinel or by an Is method, so callers test with
// errors.Is(err, fault.ErrNotFound) whatever package made the error, and
// an API needs one mapper, not one per package.
package fault

import (
	"errors"
	"fmt"
)

// The kinds. Each is a sentinel to test with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrInvalid     = errors.New("invalid input")
	ErrLimit       = errors.New("limit exceeded")
	ErrUnavailable = errors.New("unavailable")
)

// Kind returns the kind err belongs to, or nil.
func Kind(err error) error {
	for _, k := range []error{ErrInvalid, ErrLimit, ErrConflict, ErrNotFound, ErrUnavailable} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

// Error is an error of a kind with its own message (the kind is not
// repeated in it).
type Error struct {
	msg  string
	kind error
}

// New returns an error of kind with message msg.
func New(kind error, msg string) *Error { return &Error{msg: msg, kind: kind} }

func (e *Error) Error() string { return e.msg }

// Unwrap returns the kind.
func (e *Error) Unwrap() error { return e.kind }

// InputError is invalid input: the field (its path, e.g.
// "pools[0].members[1].address") and what is wrong with it.
type InputError struct {
	Field   string
	Problem string
}

// Invalid returns an InputError for field.
func Invalid(field, format string, args ...any) *InputError {
	return &InputError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

func (e *InputError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// Is makes an InputError an ErrInvalid.
func (e *InputError) Is(target error) bool { return target == ErrInvalid }

// Field returns the field an error of kind ErrInvalid names, if it does.
func Field(err error) string {
	var f interface{ FieldName() string }
	if errors.As(err, &f) {
		return f.FieldName()
	}
	var in *InputError
	if errors.As(err, &in) {
		return in.Field
	}
	return ""
}
