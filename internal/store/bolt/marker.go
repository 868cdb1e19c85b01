package bolt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ErrDataLost is wrapped by the error Open returns when the store file is
// missing, empty or holds no data although the data directory shows that
// it held data (Options.Marker, Options.Hints).
var ErrDataLost = errors.New("store file lost its data")

// markerText is written to the marker file.
const markerText = "This file records that the store file beside it held data.\n" +
	"While it exists, a missing, empty or damaged store file is refused at start instead of\n" +
	"being replaced by an empty store. Do not delete it to get past that refusal: restore the\n" +
	"store file from a backup, or start anew deliberately (see the start-up error).\n"

// checkLost refuses a store file that is missing or empty while the marker
// (or, for an empty file, a hint) shows data existed. With opts.NewStore it
// moves such a file aside and removes the marker instead.
func checkLost(path string, opts Options) error {
	fi, err := os.Stat(path)
	missing := errors.Is(err, fs.ErrNotExist)
	empty := err == nil && fi.Mode().IsRegular() && fi.Size() == 0
	if !missing && !empty {
		return nil
	}
	evidence := markerEvidence(opts.Marker)
	if evidence == "" && empty {
		for _, h := range opts.Hints {
			if _, err := os.Stat(h); err == nil {
				evidence = fmt.Sprintf("%s exists, so a node ran in this data directory before (a store file is never empty once opened)", h)
				break
			}
		}
	}
	if evidence == "" {
		return nil
	}
	state := "is missing"
	if empty {
		state = "is empty (0 bytes)"
	}
	if opts.NewStore {
		return startAnew(path, opts, state)
	}
	return fmt.Errorf("store file %s %s, but %s: %w", path, state, evidence, ErrDataLost)
}

// markerEvidence describes the marker file, or returns "" when there is none.
func markerEvidence(marker string) string {
	if marker == "" {
		return ""
	}
	fi, err := os.Stat(marker)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("the marker %s (written %s, when the store first held data) shows it held data", marker, fi.ModTime().UTC().Format(time.RFC3339))
}

// startAnew moves a damaged or emptied store file aside (kept for
// recovery; path "": none to move) and removes the marker, so that a new
// store is created.
func startAnew(path string, opts Options, state string) error {
	if _, err := os.Stat(path); path != "" && err == nil {
		aside := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(path, aside); err != nil {
			return fmt.Errorf("moving the damaged store file aside: %w", err)
		}
		if opts.Logger != nil {
			opts.Logger.Warn("starting with a new, empty store as asked: the old store file was moved aside", "path", path, "state", state, "moved_to", aside)
		}
	} else if opts.Logger != nil {
		opts.Logger.Warn("starting with a new, empty store as asked", "path", path, "state", state)
	}
	if opts.Marker != "" {
		if err := os.Remove(opts.Marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the store marker: %w", err)
		}
	}
	return nil
}

// writeMarker records that the store holds data (once; a failure is logged
// and not retried, since the store itself is fine).
func (s *Store) writeMarker() {
	if s.opts.Marker == "" || !s.marked.CompareAndSwap(false, true) {
		return
	}
	if _, err := os.Stat(s.opts.Marker); err == nil {
		return
	}
	if err := writeSynced(s.opts.Marker, []byte(markerText)); err != nil {
		s.log.Warn("could not write the store marker: a lost store file would not be detected at start", "marker", s.opts.Marker, "err", err)
		return
	}
	s.log.Info("store holds data: wrote its marker", "marker", s.opts.Marker)
}

// writeSynced writes a small file durably: temporary file, fsync, rename,
// fsync of the directory.
func writeSynced(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
