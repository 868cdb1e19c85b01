package acme

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"time"

	acmeproto "github.com/mholt/acmez/v3/acme"
)

// dnsSolver answers dns-01 through the operator's command (acme.dns01):
// COMMAND... present|cleanup RECORD-NAME TXT-VALUE, bounded by timeout.
// The command is expected to return once the record is published.
type dnsSolver struct {
	cmd     []string
	timeout time.Duration
	log     *slog.Logger
}

func (s dnsSolver) run(ctx context.Context, action string, ch acmeproto.Challenge) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	args := append(append([]string{}, s.cmd[1:]...), action, ch.DNS01TXTRecordName(), ch.DNS01KeyAuthorization())
	c := exec.CommandContext(ctx, s.cmd[0], args...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		msg := out.String()
		if len(msg) > 500 {
			msg = msg[:500]
		}
		return fmt.Errorf("acme.dns01.command %s %s: %w: %s", action, ch.DNS01TXTRecordName(), err, msg)
	}
	return nil
}

func (s dnsSolver) Present(ctx context.Context, ch acmeproto.Challenge) error {
	return s.run(ctx, "present", ch)
}

func (s dnsSolver) CleanUp(ctx context.Context, ch acmeproto.Challenge) error {
	if err := s.run(context.WithoutCancel(ctx), "cleanup", ch); err != nil {
		s.log.Warn("dns-01 cleanup", "err", err)
		return err
	}
	return nil
}
