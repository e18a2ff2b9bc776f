package build

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
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
	base := DesiredFor(testApp(), now, false)
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
			got := DesiredFor(app, now, false)
			if (got.Name == base.Name) != tc.same {
				t.Errorf("name %s vs %s, want same=%v", got.Name, base.Name, tc.same)
			}
		})
	}
}

func TestBuildNamesAreValidJobNames(t *testing.T) {
	app := testApp()
	app.Name = strings.Repeat("a-very-long-resource-name.", 10)[:250]
	b := DesiredFor(app, time.Now(), false)
	if errs := validation.IsDNS1123Label(b.Name); len(errs) > 0 || len(b.Name) > 52 {
		t.Errorf("build name %q is not a valid job name: %v", b.Name, errs)
	}
}

// built records a finished build of app's current spec in its status.
func built(app *herokunixv1.HerokuNixApp, job string, at time.Time, failed bool) {
	d := DesiredFor(app, at, false)
	b := &herokunixv1.BuildStatus{Hash: d.SpecHash, Job: job, CompletionTime: &metav1.Time{Time: at}}
	if failed {
		b.Message = "error: boom"
		if app.Status.Build != nil {
			b.SucceededHash = app.Status.Build.SucceededHash
		}
	} else {
		b.SucceededHash = d.SpecHash
		app.Status.Revision = "9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd"
		app.Status.Images = map[string]herokunixv1.ImageStatus{"web": {ImageID: "sha256:a", Digest: "sha256:b"}}
	}
	app.Status.Build = b
}

func TestMovingRefsRefreshAfterTheInterval(t *testing.T) {
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	app := testApp()
	first := DesiredFor(app, done, false)
	if first.Background {
		t.Error("the first build of a spec runs in the background")
	}
	built(app, first.Name, done, false)

	if b := DesiredFor(app, done.Add(5*time.Minute), false); b.Name != first.Name {
		t.Errorf("refreshed before the interval: %+v", b)
	}
	refresh := DesiredFor(app, done.Add(11*time.Minute), false)
	if !refresh.Background || refresh.Name == first.Name || refresh.Request.SkipIfRevision != app.Status.Revision {
		t.Errorf("no background refresh after the interval: %+v", refresh)
	}
	if f := DesiredFor(app, done.Add(time.Minute), true); f.Name == first.Name || !f.Background {
		t.Errorf("a reconcile request did not refresh: %+v", f)
	}

	// While the refresh runs it is followed, not replaced.
	app.Status.Build = &herokunixv1.BuildStatus{Hash: refresh.SpecHash, Job: refresh.Name, SucceededHash: refresh.SpecHash}
	if b := DesiredFor(app, done.Add(time.Hour), false); b.Name != refresh.Name || !b.Background {
		t.Errorf("a running refresh was not followed: %+v", b)
	}
	// Once it is done, nothing is built until the next interval.
	built(app, refresh.Name, done.Add(12*time.Minute), false)
	if b := DesiredFor(app, done.Add(13*time.Minute), false); b.Name != refresh.Name {
		t.Errorf("a finished refresh was followed by another build at once: %+v", b)
	}
	if b := DesiredFor(app, done.Add(23*time.Minute), false); b.Name == refresh.Name || b.Name == first.Name {
		t.Errorf("the next refresh reuses a name: %+v", b)
	}
}

func TestPinnedRefsAreNeverRefreshed(t *testing.T) {
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	app := testApp()
	app.Spec.Flake = "github:acme/shop/9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd"
	first := DesiredFor(app, done, false)
	built(app, first.Name, done, false)
	if b := DesiredFor(app, done.Add(time.Hour), true); b.Name != first.Name {
		t.Errorf("a pinned ref was rebuilt: %+v", b)
	}
}

func TestFailedBuildsAreRetriedWhenAskedOrWhenAMovingRefMayHaveMoved(t *testing.T) {
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	app := testApp()
	app.Spec.Flake = "github:acme/shop/9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd"
	first := DesiredFor(app, done, false)
	built(app, first.Name, done, true)
	if b := DesiredFor(app, done.Add(time.Hour), false); b.Name != first.Name || b.Background {
		t.Errorf("a failed build of a pinned ref was retried unasked or in the background: %+v", b)
	}
	moving := testApp()
	mfirst := DesiredFor(moving, done, false)
	built(moving, mfirst.Name, done, true)
	if b := DesiredFor(moving, done.Add(5*time.Minute), false); b.Name != mfirst.Name {
		t.Errorf("a failed build of a moving ref was retried before the interval: %+v", b)
	}
	if b := DesiredFor(moving, done.Add(time.Hour), false); b.Name == mfirst.Name || b.Background {
		t.Errorf("a failed build of a moving ref was not retried in the foreground after the interval: %+v", b)
	}
	retry := DesiredFor(app, done.Add(time.Hour), true)
	if retry.Name == first.Name || retry.Background {
		t.Errorf("a reconcile request did not retry the failed build in the foreground: %+v", retry)
	}
}

// TestAMovingTarballRefreshSkipsItsNarHash: a tarball has no rev; its
// revision on status is the hex narHash the build reported, and a refresh
// hands exactly that back, which the build compares with the narHash it
// resolves (nixbuild.Run).
func TestAMovingTarballRefreshSkipsItsNarHash(t *testing.T) {
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	app := testApp()
	app.Spec.Flake = "https://example.com/acme/shop/archive/main.tar.gz"
	first := DesiredFor(app, done, false)
	built(app, first.Name, done, false)
	app.Status.Revision = strings.Repeat("dc", 32)
	refresh := DesiredFor(app, done.Add(11*time.Minute), false)
	if !refresh.Background || refresh.Request.SkipIfRevision != app.Status.Revision {
		t.Errorf("refresh of a moving tarball = %+v; want a background build skipping %s", refresh, app.Status.Revision)
	}
}

// TestDesiredBuildJobMountsOnlyTheNixConfKey: the build container runs user
// code as root, so of the nix.conf Secret only the named key reaches it,
// never the whole Secret.
func TestDesiredBuildJobMountsOnlyTheNixConfKey(t *testing.T) {
	for _, ref := range []herokunixv1.SecretKeyRef{{Name: "nix-access", Key: "nix.conf"}, {Name: "nix-access"}} {
		app := testApp()
		app.Spec.Build.NixConfigSecretRef = &ref
		job, err := DesiredJob(app, DesiredFor(app, time.Now(), false), JobImages{Tools: "tools:1", Nix: "nix:1", RegistryHost: "registry.heroku.com"})
		if err != nil {
			t.Fatal(err)
		}
		var secretVolumes int
		for _, v := range job.Spec.Template.Spec.Volumes {
			if v.Projected != nil {
				t.Errorf("volume %s is projected; want only the one Secret key", v.Name)
			}
			if v.Secret == nil {
				continue
			}
			secretVolumes++
			want := []corev1.KeyToPath{{Key: ref.KeyOrDefault(), Path: "nix.conf"}}
			if v.Secret.SecretName != ref.Name || !reflect.DeepEqual(v.Secret.Items, want) {
				t.Errorf("Secret volume %s = %s %+v; want %s with items %+v", v.Name, v.Secret.SecretName, v.Secret.Items, ref.Name, want)
			}
		}
		if secretVolumes != 1 {
			t.Errorf("%d Secret volumes; want 1", secretVolumes)
		}
		for _, c := range append(job.Spec.Template.Spec.InitContainers, job.Spec.Template.Spec.Containers...) {
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					t.Errorf("%s takes the whole Secret %s as environment", c.Name, e.SecretRef.Name)
				}
			}
		}
	}
}

func TestDesiredBuildJobKeepsTheKeyInThePushContainer(t *testing.T) {
	app := testApp()
	app.Spec.Build.NixConfigSecretRef = &herokunixv1.SecretKeyRef{Name: "nix-access", Key: "nix.conf"}
	job, err := DesiredJob(app, DesiredFor(app, time.Now(), false), JobImages{Tools: "tools:1", Nix: "nix:1", RegistryHost: "registry.heroku.com"})
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

// testScheme knows the built-in kinds and HerokuNixApp, for fake clients.
func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := herokunixv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}

// TestAFailedBuildRunsAgainWhenItsInputsChange: what a build runs with
// besides what it builds (resources, placement, the Secrets' versions)
// re-runs a failed build when it changes, and leaves a build that
// succeeded, or one still running, alone.
func TestAFailedBuildRunsAgainWhenItsInputsChange(t *testing.T) {
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	secrets := SecretVersions{Credentials: "10", NixConfig: "20"}
	changes := map[string]func(*herokunixv1.HerokuNixApp, *SecretVersions){
		"more memory": func(a *herokunixv1.HerokuNixApp, _ *SecretVersions) {
			a.Spec.Build.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}
		},
		"other nodes": func(a *herokunixv1.HerokuNixApp, _ *SecretVersions) {
			a.Spec.Build.NodeSelector = map[string]string{"disk": "large"}
		},
		"a repaired nix.conf Secret":    func(_ *herokunixv1.HerokuNixApp, s *SecretVersions) { s.NixConfig = "21" },
		"a repaired credentials Secret": func(_ *herokunixv1.HerokuNixApp, s *SecretVersions) { s.Credentials = "11" },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			for _, failed := range []bool{true, false} {
				app := testApp()
				app.Spec.Flake = "github:acme/shop/9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd"
				first := DesiredForSecrets(app, done, false, secrets)
				built(app, first.Name, done, failed)
				app.Status.Build.Inputs = first.Inputs
				if again := DesiredForSecrets(app, done, false, secrets); again.Name != first.Name {
					t.Fatalf("unchanged inputs ran the build again: %+v", again)
				}
				now := secrets
				change(app, &now)
				next := DesiredForSecrets(app, done, false, now)
				if rerun := next.Name != first.Name; rerun != failed {
					t.Errorf("failed=%v: run again %v, want %v", failed, rerun, failed)
				}
				if next.Retry {
					t.Errorf("a change of inputs counts as a retry: %+v", next)
				}
				// A build still running is left to finish.
				app.Status.Build.CompletionTime, app.Status.Build.Message = nil, ""
				if running := DesiredForSecrets(app, done, false, now); running.Name != first.Name {
					t.Errorf("a running build was replaced: %+v", running)
				}
			}
		})
	}
}

// TestAFailureThatMayPassIsRetriedWhenDue: a failed build with a retry
// time is run again at that time, as a retry, and not before.
func TestAFailureThatMayPassIsRetriedWhenDue(t *testing.T) {
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	app := testApp()
	app.Spec.Flake = "github:acme/shop/9f2c1e0aa1b29f2c1e0aa1b29f2c1e0aa1b2abcd"
	first := DesiredFor(app, done, false)
	built(app, first.Name, done, true)
	app.Status.Build.RetryTime = &metav1.Time{Time: done.Add(time.Minute)}
	if b := DesiredFor(app, done.Add(59*time.Second), false); b.Name != first.Name {
		t.Errorf("retried before its time: %+v", b)
	}
	b := DesiredFor(app, done.Add(time.Minute), false)
	if b.Name == first.Name || !b.Retry || b.Background {
		t.Errorf("not retried in the foreground when due: %+v", b)
	}
	if asked := DesiredFor(app, done.Add(time.Minute), true); asked.Retry {
		t.Errorf("a reconcile request counts as a retry (its count must start over): %+v", asked)
	}
}

// TestTheLayerBudgetIsPartOfWhatIsBuilt: another maxLayers shapes other
// images; the default keeps the hash of a spec that leaves it unset.
func TestTheLayerBudgetIsPartOfWhatIsBuilt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := DesiredFor(testApp(), now, false)
	def := testApp()
	def.Spec.Build.MaxLayers = ptr.To[int32](32)
	if got := DesiredFor(def, now, false); got.SpecHash != base.SpecHash {
		t.Errorf("the default layer budget changed the hash: %s vs %s", got.SpecHash, base.SpecHash)
	}
	other := testApp()
	other.Spec.Build.MaxLayers = ptr.To[int32](12)
	if got := DesiredFor(other, now, false); got.SpecHash == base.SpecHash {
		t.Error("another layer budget is the same build")
	}
}
