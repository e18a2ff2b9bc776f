package heroku

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/herokunix/herokunix/test/herokustub"
)

func TestDynosListsTheReleasesDynosAndTheirStates(t *testing.T) {
	e := newEnv(t, func(so *herokustub.Options, _ *Options) { so.DynoState = herokustub.DynoStarting })
	e.stub.CreateApp("shop", "container")
	rel, _, err := e.client.ReleaseImages(context.Background(), "shop", map[string]string{"web": e.push(t, "shop/web")})
	if err != nil {
		t.Fatal(err)
	}
	dynos, err := e.client.Dynos(context.Background(), "shop")
	if err != nil || len(dynos) != 1 || dynos[0].Name != "web.1" || dynos[0].Type != "web" ||
		dynos[0].State != DynoStarting || dynos[0].ReleaseVersion != rel.Version {
		t.Fatalf("dynos = %+v, %v", dynos, err)
	}
	if err := e.stub.SetDynoState("shop", "web", herokustub.DynoCrashed); err != nil {
		t.Fatal(err)
	}
	if dynos, _ := e.client.Dynos(context.Background(), "shop"); dynos[0].State != DynoCrashed {
		t.Errorf("dynos = %+v after the crash", dynos)
	}
}

func TestReleaseOutputIsReadWithoutTheKey(t *testing.T) {
	e := newEnv(t)
	e.stub.CreateApp("shop", "container")
	images := map[string]string{"web": e.push(t, "shop/web"), "release": e.push(t, "shop/release")}
	rel, _, err := e.client.ReleaseImages(context.Background(), "shop", images)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.stub.CompletePendingRelease("shop", false); err != nil {
		t.Fatal(err)
	}
	e.stub.ResetCalls()
	out, err := e.client.ReleaseOutput(context.Background(), rel.OutputStreamURL)
	if err != nil || !strings.Contains(out, "Release command failed.") {
		t.Fatalf("output %q, %v", out, err)
	}
	calls := e.stub.Calls()
	if len(calls) != 1 || calls[0].Auth != "" || calls[0].Status != 200 {
		t.Errorf("calls = %+v, want one GET without Authorization", calls)
	}
	_, err = e.client.ReleaseOutput(context.Background(), strings.Replace(rel.OutputStreamURL, rel.ID, "not-started", 1))
	if !errors.Is(err, ErrNoOutput) {
		t.Errorf("a stream that has not started: %v, want ErrNoOutput", err)
	}
	if _, err := e.client.ReleaseOutput(context.Background(), "file:///etc/passwd"); err == nil {
		t.Error("a non-HTTP stream URL was read")
	}
}
