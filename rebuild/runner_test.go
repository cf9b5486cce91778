package rebuild

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/store"
)

// recorder is a Publisher remembering what it was given and when.
type recorder struct {
	mu    sync.Mutex
	times []time.Time
	snaps []*snapshot.Snapshot
}

func (r *recorder) Update(_ context.Context, snap *snapshot.Snapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.times = append(r.times, time.Now())
	r.snaps = append(r.snaps, snap)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.snaps)
}

func gateway(name string) *store.Gateway {
	return &store.Gateway{
		Ref:        store.ObjectRef{Kind: store.KindIstioGateway, Namespace: "ns", Name: name},
		NodeLabels: map[string]string{"app": name},
		Hosts:      []string{"*"},
	}
}

func start(t *testing.T, db *store.Store, synced chan struct{}) (*recorder, func()) {
	t.Helper()
	rec := &recorder{}
	r := New(Config{
		Store: db, Synced: []<-chan struct{}{synced}, Publisher: rec,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Start(ctx); close(done) }()
	return rec, func() { cancel(); <-done }
}

// startSynced starts a runner whose sources have synced and waits until it
// has published its first snapshot.
func startSynced(t *testing.T) (*store.Store, *recorder, func()) {
	t.Helper()
	db := store.New()
	synced := make(chan struct{})
	close(synced)
	rec, stop := start(t, db, synced)
	synctest.Wait()
	return db, rec, stop
}

func TestNothingIsPublishedBeforeSourcesSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := store.New()
		synced := make(chan struct{})
		rec, stop := start(t, db, synced)
		defer stop()
		db.Upsert(store.Objects{Gateways: []*store.Gateway{gateway("a")}})
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := rec.count(); n != 0 {
			t.Fatalf("published %d snapshots before sync", n)
		}
		close(synced)
		synctest.Wait()
		if n := rec.count(); n != 1 {
			t.Fatalf("published %d snapshots after sync, want 1", n)
		}
	})
}

func TestBurstOfChangesIsOnePush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db, rec, stop := startSynced(t)
		defer stop()
		base := rec.count()

		// Ten edits 50ms apart: each resets the 100ms quiet timer.
		for i := range 10 {
			db.Upsert(store.Objects{Gateways: []*store.Gateway{gateway(string(rune('a' + i)))}})
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if n := rec.count() - base; n != 1 {
			t.Fatalf("a burst of 10 edits gave %d pushes, want 1", n)
		}
	})
}

func TestContinuousChangesArePushedWithinMaxDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db, rec, stop := startSynced(t)
		defer stop()
		base := rec.count()
		began := time.Now()

		// Edits every 50ms for 3s never leave 100ms of quiet; the 1s bound
		// must still push.
		for i := range 60 {
			db.Upsert(store.Objects{Gateways: []*store.Gateway{gateway(string(rune('a'+i%26)) + string(rune('a'+i/26)))}})
			time.Sleep(50 * time.Millisecond)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.times)-base < 2 {
			t.Fatalf("only %d pushes during 3s of continuous edits", len(rec.times)-base)
		}
		if first := rec.times[base].Sub(began); first > 1100*time.Millisecond {
			t.Fatalf("first push after %s, want within the 1s bound", first)
		}
	})
}

func TestUnchangedVersionIsNotRepublished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := store.New()
		synced := make(chan struct{})
		close(synced)
		db.Upsert(store.Objects{Gateways: []*store.Gateway{gateway("a")}})
		rec, stop := start(t, db, synced)
		defer stop()
		synctest.Wait()
		// Rewriting the same content changes the store but not the output.
		db.Replace(store.Objects{Gateways: []*store.Gateway{gateway("a")}})
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := rec.count(); n != 1 {
			t.Fatalf("published %d times, want 1 (same version)", n)
		}
	})
}
