package store

import "testing"

func ref(kind, name string) ObjectRef { return ObjectRef{Kind: kind, Namespace: "ns", Name: name} }

func TestReplaceUpsertDelete(t *testing.T) {
	s := New()
	err := s.Replace(Objects{
		Gateways: []*Gateway{{Ref: ref(KindIstioGateway, "b")}, {Ref: ref(KindGateway, "a")}},
		Policies: []*Policy{{Ref: ref(KindWAFPolicy, "p")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Changed():
	default:
		t.Fatal("no change notification after Replace")
	}
	gws := s.Read().Gateways()
	if len(gws) != 2 || gws[0].Ref.Kind != KindGateway || gws[1].Ref.Name != "b" {
		t.Fatalf("gateways not listed in kind/namespace/name order: %+v", gws)
	}

	before := s.Read() // a read transaction is a consistent view
	if err := s.Upsert(Objects{Routes: []*Route{{Ref: ref(KindVirtualService, "r")}}}); err != nil {
		t.Fatal(err)
	}
	if len(before.Routes()) != 0 || s.Read().Route(ref(KindVirtualService, "r")) == nil {
		t.Fatal("upsert visible in an older read, or missing in a new one")
	}
	if err := s.Delete(ref(KindWAFPolicy, "p")); err != nil {
		t.Fatal(err)
	}
	if len(s.Read().Policies()) != 0 {
		t.Fatal("policy not deleted")
	}
	if err := s.Replace(Objects{}); err != nil || len(s.Read().Gateways())+len(s.Read().Routes()) != 0 {
		t.Fatalf("Replace with nothing left records behind (err %v)", err)
	}
	if err := s.Delete(ObjectRef{Kind: "Pod"}); err == nil {
		t.Fatal("deleting an unknown kind succeeded")
	}
}

func TestChangedCoalesces(t *testing.T) {
	s := New()
	for range 5 {
		if err := s.Upsert(Objects{Gateways: []*Gateway{{Ref: ref(KindIstioGateway, "g")}}}); err != nil {
			t.Fatal(err)
		}
	}
	<-s.Changed()
	select {
	case <-s.Changed():
		t.Fatal("five writes gave more than one pending notification")
	default:
	}
}

// A Service shares the gateways table but not its keys: it and gateways of
// the same namespace and name are separate records, deleted separately.
func TestServiceIsItsOwnRecord(t *testing.T) {
	s := New()
	err := s.Upsert(Objects{Gateways: []*Gateway{
		{Ref: ref(KindService, "web"), NodeNamespace: "ns", NodeLabels: map[string]string{"app": "web"}},
		{Ref: ref(KindGateway, "web")},
		{Ref: ref(KindIstioGateway, "web")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.Read().Gateways()); n != 3 {
		t.Fatalf("%d records, want the Service and both gateways", n)
	}
	if err := s.Delete(ref(KindService, "web")); err != nil {
		t.Fatal(err)
	}
	txn := s.Read()
	if txn.Gateway(ref(KindService, "web")) != nil || txn.Gateway(ref(KindGateway, "web")) == nil ||
		txn.Gateway(ref(KindIstioGateway, "web")) == nil {
		t.Fatalf("after deleting the Service: %+v", txn.Gateways())
	}
}
