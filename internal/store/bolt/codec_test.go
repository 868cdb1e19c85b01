package bolt

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"gatehouse/internal/store"
)

func TestEventsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		evs  []store.Event
	}{
		{"one put", []store.Event{{Type: store.EventPut, KV: store.KV{Key: "a", Value: []byte("v"), ModRev: 7}}}},
		{"mixed", []store.Event{
			{Type: store.EventPut, KV: store.KV{Key: "a/b", Value: []byte{}, ModRev: 7}},
			{Type: store.EventDelete, KV: store.KV{Key: "a/c", ModRev: 7}},
			{Type: store.EventPut, KV: store.KV{Key: "ü", Value: make([]byte, 300), ModRev: 7}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeEvents(7, encodeEvents(tc.evs))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, tc.evs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-got +want):\n%s", diff)
			}
		})
	}
}

// FuzzDecodeEvents checks that a damaged record yields an error, never a
// panic, and that what decodes re-encodes to no more bytes than it came from
// (the decoder never invents data).
func FuzzDecodeEvents(f *testing.F) {
	f.Add(encodeEvents([]store.Event{{Type: store.EventPut, KV: store.KV{Key: "k", Value: []byte("v")}}}))
	f.Add(encodeEvents([]store.Event{{Type: store.EventDelete, KV: store.KV{Key: "k"}}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := decodeEvents(1, b)
		if err != nil {
			return
		}
		if got := encodeEvents(evs); len(got) > len(b) {
			t.Errorf("re-encoding %d events gives %d bytes from %d", len(evs), len(got), len(b))
		}
	})
}
