package store_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

// pools is a Handler that keeps the pool of every host under "hosts/".
type pools struct {
	byHost  map[string]string
	changed chan struct{} // a receive per Reset or Apply, for the example
}

func (p *pools) Reset(ctx context.Context, l *store.Listing) error {
	byHost := map[string]string{}
	for kv, err := range l.All() {
		if err != nil {
			return err // Follow logs it and lists again later
		}
		byHost[kv.Key] = string(kv.Value)
	}
	p.byHost = byHost // replace only once the whole listing is read
	fmt.Printf("reset at revision %d: %d hosts\n", l.Rev(), len(byHost))
	p.changed <- struct{}{}
	return nil
}

func (p *pools) Apply(resps []store.WatchResponse) {
	for _, r := range resps {
		for _, ev := range r.Events {
			switch ev.Type {
			case store.EventPut:
				p.byHost[ev.KV.Key] = string(ev.KV.Value)
				fmt.Printf("revision %d: %s -> %s\n", r.Rev, ev.KV.Key, ev.KV.Value)
			case store.EventDelete:
				delete(p.byHost, ev.KV.Key)
				fmt.Printf("revision %d: %s removed\n", r.Rev, ev.KV.Key)
			}
		}
	}
	p.changed <- struct{}{}
}

// exampleStore opens a bolt store in a new directory, and returns it with
// the function that closes and removes it.
func exampleStore() (store.Store, func()) {
	dir, err := os.MkdirTemp("", "store-example")
	if err != nil {
		log.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{})
	if err != nil {
		log.Fatal(err)
	}
	return st, func() {
		st.Close()
		os.RemoveAll(dir)
	}
}

func ExampleFollow() {
	st, done := exampleStore()
	defer done()
	ctx, cancel := context.WithCancel(context.Background())
	store.PutKV(ctx, st, "hosts/a.example", []byte("web"))

	p := &pools{changed: make(chan struct{}, 1)}
	f := store.Follow(ctx, st, "hosts/", store.FollowOptions{What: "hosts"}, p)
	<-p.changed
	store.PutKV(ctx, st, "hosts/b.example", []byte("api"))
	<-p.changed
	store.DeleteKey(ctx, st, "hosts/a.example")
	<-p.changed
	cancel()
	<-f.Done()
	fmt.Println(p.byHost)
	// Output:
	// reset at revision 1: 1 hosts
	// revision 2: hosts/b.example -> api
	// revision 3: hosts/a.example removed
	// map[hosts/b.example:api]
}

func ExampleAll() {
	st, done := exampleStore()
	defer done()
	ctx := context.Background()
	for _, h := range []string{"c", "a", "b"} {
		store.PutKV(ctx, st, "hosts/"+h+".example", []byte("web"))
	}
	for kv, err := range store.All(ctx, st, "hosts/", 2) { // two keys per List call
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(kv.Key)
	}
	// Output:
	// hosts/a.example
	// hosts/b.example
	// hosts/c.example
}
