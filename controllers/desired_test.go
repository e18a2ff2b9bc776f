package controllers

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/heroku"
)

func testApp() *herokunixv1.HerokuNixApp {
	return &herokunixv1.HerokuNixApp{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team-a"},
		Spec: herokunixv1.HerokuNixAppSpec{
			AppName:              "acme-shop",
			Flake:                "github:acme/shop?ref=main",
			Processes:            map[string]herokunixv1.Process{"web": {Attribute: "packages.x86_64-linux.web"}},
			CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: "heroku", Key: "apiKey"},
		},
	}
}

func TestDesiredBuildNameFollowsWhatIsBuilt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := desiredBuild(testApp(), now, false)
	cases := []struct {
		name   string
		change func(*herokunixv1.HerokuNixApp)
		same   bool
	}{
		{"an unrelated change keeps the build", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Processes["web"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.web", Quantity: ptr.To[int32](3)}
		}, true},
		{"suspend keeps the build", func(a *herokunixv1.HerokuNixApp) { a.Spec.Suspend = true }, true},
		{"another flake is another build", func(a *herokunixv1.HerokuNixApp) { a.Spec.Flake = "github:acme/shop?ref=dev" }, false},
		{"another attribute is another build", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Processes["web"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.web2"}
		}, false},
		{"another command is another build", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Processes["web"] = herokunixv1.Process{Attribute: "packages.x86_64-linux.web", Command: []string{"bin/x"}}
		}, false},
		{"another process is another build", func(a *herokunixv1.HerokuNixApp) { a.Spec.Processes["worker"] = herokunixv1.Process{Attribute: "w"} }, false},
		{"another substituter is another build", func(a *herokunixv1.HerokuNixApp) { a.Spec.Build.Substituters = []string{"https://cache.example"} }, false},
		{"another Nix image is another build", func(a *herokunixv1.HerokuNixApp) { a.Spec.Build.Image = "nixos/nix:2.30" }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := testApp()
			tc.change(app)
			got := desiredBuild(app, now, false)
			if (got.Name == base.Name) != tc.same {
				t.Errorf("name %s vs %s, want same=%v", got.Name, base.Name, tc.same)
			}
		})
	}
}

func TestBuildNamesAreValidJobNames(t *testing.T) {
	app := testApp()
	app.Name = strings.Repeat("a-very-long-resource-name.", 10)[:250]
	b := desiredBuild(app, time.Now(), false)
	if errs := validation.IsDNS1123Label(b.Name); len(errs) > 0 || len(b.Name) > 52 {
		t.Errorf("build name %q is not a valid job name: %v", b.Name, errs)
	}
}

func TestMovingRefsRefreshAfterTheInterval(t *testing.T) {
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	app := testApp()
	first := desiredBuild(app, done, false)
	app.Status.Build = &herokunixv1.BuildStatus{Hash: first.SpecHash, Job: first.Name, CompletionTime: &metav1.Time{Time: done}}
	app.Status.Revision = "9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd"

	if b := desiredBuild(app, done.Add(5*time.Minute), false); b.Refresh || b.Name != first.Name {
		t.Errorf("refreshed before the interval: %+v", b)
	}
	b := desiredBuild(app, done.Add(11*time.Minute), false)
	if !b.Refresh || b.Name == first.Name || b.Request.SkipIfRevision != app.Status.Revision {
		t.Errorf("no refresh after the interval: %+v", b)
	}
	if f := desiredBuild(app, done.Add(time.Minute), true); !f.Refresh {
		t.Error("a reconcile request did not force a refresh")
	}
	app.Spec.Flake = "github:acme/shop/" + app.Status.Revision
	pinned := desiredBuild(app, done, false)
	app.Status.Build = &herokunixv1.BuildStatus{Hash: pinned.SpecHash, Job: pinned.Name, CompletionTime: &metav1.Time{Time: done}}
	if b := desiredBuild(app, done.Add(time.Hour), true); b.Refresh {
		t.Error("a pinned ref was refreshed")
	}
}

func TestIsMovingRef(t *testing.T) {
	for ref, moving := range map[string]bool{
		"github:acme/shop":                                                              true,
		"github:acme/shop?ref=main":                                                     true,
		"git+https://example.com/shop.git?ref=main":                                     true,
		"github:acme/shop/9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd":                     false,
		"git+https://example.com/shop.git?rev=9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd": false,
		"path:/src/shop":                                                                false,
		"/src/shop":                                                                     false,
	} {
		if got := isMovingRef(ref); got != moving {
			t.Errorf("isMovingRef(%q) = %v, want %v", ref, got, moving)
		}
	}
}

func TestDesiredFormationLeavesUnsetValuesAlone(t *testing.T) {
	app := testApp()
	app.Spec.Processes = map[string]herokunixv1.Process{
		"web":     {Attribute: "w", Quantity: ptr.To[int32](2), Size: "standard-2X"},
		"worker":  {Attribute: "k", Size: "performance-m"},
		"clock":   {Attribute: "c"},
		"release": {Attribute: "r", Quantity: ptr.To[int32](1)},
	}
	got := desiredFormation(app)
	want := []heroku.Formation{{Type: "web", Quantity: 2, Size: "standard-2X"}, {Type: "worker", Quantity: -1, Size: "performance-m"}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("got %+v, want %+v", got[i], want[i])
		}
	}
}

func TestDesiredBuildJobKeepsTheKeyInThePushContainer(t *testing.T) {
	app := testApp()
	app.Spec.Build.NixConfigSecretRef = &herokunixv1.SecretKeyRef{Name: "nix-access", Key: "nix.conf"}
	job, err := desiredBuildJob(app, desiredBuild(app, time.Now(), false), JobImages{Tools: "tools:1", Nix: "nix:1", RegistryHost: "registry.heroku.com"})
	if err != nil {
		t.Fatal(err)
	}
	spec := job.Spec.Template.Spec
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		var keyRefs, nixConf int
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "heroku" {
				keyRefs++
			}
		}
		for _, m := range c.VolumeMounts {
			if m.Name == volNixConf {
				nixConf++
			}
		}
		if (keyRefs > 0) != (c.Name == containerPush) {
			t.Errorf("%s has %d key refs", c.Name, keyRefs)
		}
		if (nixConf > 0) != (c.Name == containerBuild) {
			t.Errorf("%s mounts the nix.conf Secret %d times", c.Name, nixConf)
		}
	}
	if *job.Spec.ActiveDeadlineSeconds != int64(defaultBuildTimeout.Seconds()) || *job.Spec.BackoffLimit != 0 {
		t.Errorf("deadline %d backoff %d", *job.Spec.ActiveDeadlineSeconds, *job.Spec.BackoffLimit)
	}
}
