package heroku

import "testing"

func TestReleasesSinceListsFromAVersionOn(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container") // v1 and v2, as Heroku makes them
	web := e.push(t, "shop/web")
	if _, _, err := e.client.ReleaseImages(t.Context(), "shop", map[string]string{"web": web}); err != nil {
		t.Fatal(err)
	}
	rels, err := e.client.ReleasesSince(t.Context(), "shop", 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != 2 || rels[0].Version != 2 || rels[1].Version != 3 {
		t.Fatalf("got %+v, want v2 and v3", rels)
	}
	if rels, err := e.client.ReleasesSince(t.Context(), "shop", 1, 1); err != nil || len(rels) != 1 || rels[0].Version != 1 {
		t.Errorf("one page of one: %+v %v", rels, err)
	}
	if _, err := e.client.ReleasesSince(t.Context(), "shop", 1, 0); err == nil {
		t.Error("max 0 was sent")
	}
}
