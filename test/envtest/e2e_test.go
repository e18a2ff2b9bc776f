package envtest

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/controllers"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/internal/nixbuild"
	"github.com/herokunix/herokunix/test/fixtures"
	"github.com/herokunix/herokunix/test/fixtures/fixturestest"
)

// withLocalBuilder builds in-process with the machine's Nix, offline.
func withLocalBuilder(t *testing.T) harnessOption {
	return func(h *harness, c *controllers.ReconcilerConfig, o *controllers.Options) {
		events := make(chan event.TypedGenericEvent[*herokunixv1.HerokuNixApp], 16)
		c.Builder = &build.LocalBuilder{
			Nix:          nixbuild.Nix{Offline: true},
			RegistryHost: h.registryHost,
			WorkDir:      t.TempDir(),
			Events:       events,
		}
		o.BuildEvents = events
	}
}

// TestEndToEndWithTheLocalBuilder deploys a fixture flake with a real Nix
// build, a real push and a real release against the Heroku stand-in.
func TestEndToEndWithTheLocalBuilder(t *testing.T) {
	fixturestest.RequireNix(t)
	h := newHarness(t, withLocalBuilder(t))
	h.createSecret()
	flake := fixturestest.Prepare(t, fixtures.Closure)
	app := h.newApp("shop", func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Flake = flake
		a.Spec.Processes = map[string]herokunixv1.Process{
			"web": {Attribute: "packages.x86_64-linux.server", Command: []string{"bin/server"}},
		}
	})
	got := h.eventuallyConditionWithin(app, herokunixv1.ConditionReady, metav1.ConditionTrue, herokunixv1.ReasonReleased, buildTimeout)

	rels := h.stub.Releases(testHerokuApp)
	cur := rels[len(rels)-1]
	web := got.Status.Images["web"]
	if !cur.Current || cur.Images["web"] != web.ImageID {
		t.Fatalf("Heroku runs %+v, want image %s", cur, web.ImageID)
	}
	if got.Status.LockedFlake == "" {
		t.Error("status has no locked flake")
	}
	// The released image is in the registry, under the config digest Heroku runs.
	ref, err := name.ParseReference(h.registryHost + "/" + testHerokuApp + "/web@" + web.Digest)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: "_", Password: h.key}))
	if err != nil {
		t.Fatalf("pulling the released image: %v", err)
	}
	if id, _ := img.ConfigName(); id.String() != web.ImageID {
		t.Errorf("pulled image ID %s, want %s", id, web.ImageID)
	}
}
