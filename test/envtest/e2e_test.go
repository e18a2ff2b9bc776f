package envtest

import (
	"io"
	"net/http"
	"testing"
	"time"

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
	"github.com/herokunix/herokunix/test/herokustub"
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
// build, a real push and a real release against the Heroku stand-in, which
// runs the released web image: Ready comes once that dyno is really up.
func TestEndToEndWithTheLocalBuilder(t *testing.T) {
	fixturestest.RequireNix(t)
	h := newHarnessWithStub(t, herokustub.Options{RunImages: true, DynoDir: t.TempDir()}, withLocalBuilder(t), withDynoPoll(time.Second))
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
	if s := got.Status.Serving; s == nil || s.State != herokunixv1.DynoStateUp || s.Release != cur.Version {
		t.Errorf("serving %+v, want the web dyno of v%d up", s, cur.Version)
	}
	dynos := h.stub.Dynos(testHerokuApp)
	if len(dynos) != 1 || dynos[0].State != herokustub.DynoUp || dynos[0].ReleaseVersion != cur.Version {
		t.Fatalf("the stand-in's dynos: %+v", dynos)
	}
	if body, err := httpGet(dynos[0].URL + "/"); err != nil || body != fixtures.ServerGreeting {
		t.Errorf("GET / on the web dyno: %q, %v", body, err)
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

func httpGet(url string) (string, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
