package store

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

const (
	tableGateways = "gateways"
	tableRoutes   = "routes"
	tablePolicies = "policies"
	indexID       = "id"
)

// refKeyIndexer indexes a record by its ObjectRef.
type refKeyIndexer struct{}

func (refKeyIndexer) FromObject(obj any) (bool, []byte, error) {
	ref, err := refOf(obj)
	if err != nil {
		return false, nil, err
	}
	return true, []byte(ref.key() + "\x00"), nil
}

func (refKeyIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want one ObjectRef argument, got %d", len(args))
	}
	ref, ok := args[0].(ObjectRef)
	if !ok {
		return nil, fmt.Errorf("want ObjectRef, got %T", args[0])
	}
	return []byte(ref.key() + "\x00"), nil
}

func refOf(obj any) (ObjectRef, error) {
	switch o := obj.(type) {
	case *Gateway:
		return o.Ref, nil
	case *Route:
		return o.Ref, nil
	case *Policy:
		return o.Ref, nil
	}
	return ObjectRef{}, fmt.Errorf("store has no table for %T", obj)
}

func tableOf(obj any) (string, error) {
	switch obj.(type) {
	case *Gateway:
		return tableGateways, nil
	case *Route:
		return tableRoutes, nil
	case *Policy:
		return tablePolicies, nil
	}
	return "", fmt.Errorf("store has no table for %T", obj)
}

func schema() *memdb.DBSchema {
	table := func(name string) *memdb.TableSchema {
		return &memdb.TableSchema{
			Name: name,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: refKeyIndexer{}},
			},
		}
	}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableGateways: table(tableGateways),
		tableRoutes:   table(tableRoutes),
		tablePolicies: table(tablePolicies),
	}}
}

// Store is the in-memory database of records. Records are treated as
// immutable once written: writers insert new values, never mutate old ones.
type Store struct {
	db      *memdb.MemDB
	changed chan struct{}
}

// New returns an empty store.
func New() *Store {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is static; an error here is a programming mistake.
		panic(fmt.Sprintf("store schema: %v", err))
	}
	return &Store{db: db, changed: make(chan struct{}, 1)}
}

// Changed receives a value after one or more writes were committed. It has
// capacity one, so a slow reader sees one notification for many writes and
// must re-read the whole state.
func (s *Store) Changed() <-chan struct{} { return s.changed }

func (s *Store) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Objects is a set of records.
type Objects struct {
	Gateways []*Gateway
	Routes   []*Route
	Policies []*Policy
}

// Add appends record (a *Gateway, *Route or *Policy) to the set.
func (o *Objects) Add(record any) {
	switch r := record.(type) {
	case *Gateway:
		o.Gateways = append(o.Gateways, r)
	case *Route:
		o.Routes = append(o.Routes, r)
	case *Policy:
		o.Policies = append(o.Policies, r)
	}
}

// Replace makes the store hold exactly objs, in one transaction.
func (s *Store) Replace(objs Objects) error {
	txn := s.db.Txn(true)
	defer txn.Abort()
	for _, table := range []string{tableGateways, tableRoutes, tablePolicies} {
		if _, err := txn.DeleteAll(table, indexID); err != nil {
			return fmt.Errorf("clearing %s: %w", table, err)
		}
	}
	if err := insertAll(txn, objs); err != nil {
		return err
	}
	txn.Commit()
	s.notify()
	return nil
}

// Upsert inserts or replaces records, in one transaction.
func (s *Store) Upsert(objs Objects) error {
	txn := s.db.Txn(true)
	defer txn.Abort()
	if err := insertAll(txn, objs); err != nil {
		return err
	}
	txn.Commit()
	s.notify()
	return nil
}

// Delete removes the record of kind at ref, if present.
func (s *Store) Delete(ref ObjectRef) error {
	table, err := tableOfKind(ref.Kind)
	if err != nil {
		return err
	}
	txn := s.db.Txn(true)
	defer txn.Abort()
	if _, err := txn.DeleteAll(table, indexID, ref); err != nil {
		return fmt.Errorf("deleting %s: %w", ref, err)
	}
	txn.Commit()
	s.notify()
	return nil
}

func tableOfKind(kind string) (string, error) {
	switch kind {
	case KindIstioGateway, KindGateway, KindService:
		return tableGateways, nil
	case KindVirtualService, KindHTTPRoute:
		return tableRoutes, nil
	case KindWAFPolicy:
		return tablePolicies, nil
	}
	return "", fmt.Errorf("store has no table for kind %q", kind)
}

func insertAll(txn *memdb.Txn, objs Objects) error {
	var all []any
	for _, g := range objs.Gateways {
		all = append(all, g)
	}
	for _, r := range objs.Routes {
		all = append(all, r)
	}
	for _, p := range objs.Policies {
		all = append(all, p)
	}
	for _, obj := range all {
		table, err := tableOf(obj)
		if err != nil {
			return err
		}
		if err := txn.Insert(table, obj); err != nil {
			return fmt.Errorf("inserting into %s: %w", table, err)
		}
	}
	return nil
}

// Read opens a consistent read-only view of the store. It is cheap and
// never blocks writers.
func (s *Store) Read() *ReadTxn { return &ReadTxn{txn: s.db.Txn(false)} }

// ReadTxn is a consistent read-only view. Every list it returns is ordered
// by kind, namespace and name (the id index's order), so callers produce
// deterministic output.
type ReadTxn struct{ txn *memdb.Txn }

// Gateways lists every gateway.
func (r *ReadTxn) Gateways() []*Gateway { return list[*Gateway](r.txn, tableGateways) }

// Routes lists every route.
func (r *ReadTxn) Routes() []*Route { return list[*Route](r.txn, tableRoutes) }

// Policies lists every WAF policy.
func (r *ReadTxn) Policies() []*Policy { return list[*Policy](r.txn, tablePolicies) }

// Gateway returns the gateway at ref, or nil.
func (r *ReadTxn) Gateway(ref ObjectRef) *Gateway { return get[*Gateway](r.txn, tableGateways, ref) }

// Route returns the route at ref, or nil.
func (r *ReadTxn) Route(ref ObjectRef) *Route { return get[*Route](r.txn, tableRoutes, ref) }

// Policy returns the policy at ref, or nil.
func (r *ReadTxn) Policy(ref ObjectRef) *Policy { return get[*Policy](r.txn, tablePolicies, ref) }

// Object returns the record of any kind at ref, or nil.
func (r *ReadTxn) Object(ref ObjectRef) any {
	table, err := tableOfKind(ref.Kind)
	if err != nil {
		return nil
	}
	obj, err := r.txn.First(table, indexID, ref)
	if err != nil {
		return nil
	}
	return obj
}

func get[T any](txn *memdb.Txn, table string, ref ObjectRef) T {
	var zero T
	obj, err := txn.First(table, indexID, ref)
	if err != nil || obj == nil {
		return zero
	}
	return obj.(T)
}

func list[T any](txn *memdb.Txn, table string) []T {
	it, err := txn.Get(table, indexID)
	if err != nil {
		// Only an unknown table or index errors, and both are static.
		panic(fmt.Sprintf("store: listing %s: %v", table, err))
	}
	var out []T
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(T))
	}
	return out
}
