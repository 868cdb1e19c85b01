package fault

import (
	"context"
	"errors"
	"net/http"
	"syscall"
)

// Answer is implemented by errors that choose their own HTTP status and
// code (a storage quota is 507 quota_exceeded, not 409).
type Answer interface {
	HTTPStatus() (status int, code string)
}

// HTTP maps an error to the status and code of an API answer: the one
// mapper of the admin API and the portal's management API. Errors of no
// kind are 500 internal; their text is not for the client (see Public).
func HTTP(err error) (status int, code string) {
	var a Answer
	switch {
	case errors.As(err, &a):
		return a.HTTPStatus()
	case errors.Is(err, syscall.ENOSPC): // the store's disk is full
		return http.StatusInsufficientStorage, "disk_full"
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest, "invalid_input"
	case errors.Is(err, ErrLimit):
		return http.StatusConflict, "limit_exceeded"
	case errors.Is(err, ErrConflict):
		return http.StatusConflict, "conflict"
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable, "store_unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "timeout"
	}
	return http.StatusInternalServerError, "internal"
}

// Public is the message of an answer: the error's text, except for an
// error of no kind, whose text may hold internals (paths, addresses).
func Public(err error) string {
	if status, _ := HTTP(err); status == http.StatusInternalServerError {
		return "internal error (see the server log)"
	}
	return err.Error()
}

// WithAnswer returns an error of kind with message msg that answers with
// status and code.
func WithAnswer(kind error, msg string, status int, code string) error {
	return &answerError{msg: msg, kind: kind, status: status, code: code}
}

type answerError struct {
	msg    string
	kind   error
	status int
	code   string
}

func (e *answerError) Error() string { return e.msg }
func (e *answerError) Unwrap() error { return e.kind }

func (e *answerError) HTTPStatus() (int, string) { return e.status, e.code }
