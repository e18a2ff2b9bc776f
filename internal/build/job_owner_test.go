package build

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
)

// sharedPrefixApps are two resources whose names share the 41 characters a
// build name keeps, building the same spec for different Heroku apps.
func sharedPrefixApps() (*herokunixv1.HerokuNixApp, *herokunixv1.HerokuNixApp) {
	prefix := strings.Repeat("storefront-", 4)[:41]
	a, b := testApp(), testApp()
	a.Name, a.UID, a.Spec.AppName = prefix+"-eu", types.UID("uid-eu"), "acme-shop-eu"
	b.Name, b.UID, b.Spec.AppName = prefix+"-us", types.UID("uid-us"), "acme-shop-us"
	return a, b
}

func TestBuildNamesOfResourcesSharingAPrefixDiffer(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := sharedPrefixApps()
	if da, db := DesiredFor(a, now, false), DesiredFor(b, now, false); da.Name == db.Name {
		t.Errorf("%s and %s share build %s", a.Name, b.Name, da.Name)
	}
	// A resource deleted and made again under its name builds anew.
	again := a.DeepCopy()
	again.UID = "uid-eu-2"
	if DesiredFor(a, now, false).Name == DesiredFor(again, now, false).Name {
		t.Errorf("a resource made again shares its predecessor's build")
	}
}

func TestEnsureDoesNotFollowAJobItDoesNotOwn(t *testing.T) {
	scheme := testScheme(t)
	a, b := sharedPrefixApps()
	want := DesiredFor(a, time.Now(), false)
	// Another resource's finished Job under the name a's build would take
	// (as names were made before they covered the UID).
	other, err := DesiredJob(b, want, JobImages{Tools: "tools", Nix: "nix", RegistryHost: "registry.heroku.com"})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllerutil.SetControllerReference(b, other, scheme); err != nil {
		t.Fatal(err)
	}
	other.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(other).WithStatusSubresource(&batchv1.Job{}).Build()
	j := &JobBuilder{Client: c, APIReader: c, Scheme: scheme}

	state, err := j.Ensure(context.Background(), a, want, "")

	if err == nil || !strings.Contains(err.Error(), "is not this resource's") {
		t.Fatalf("Ensure followed %s/%s's Job: %+v, %v", b.Namespace, b.Name, state, err)
	}

	// Its own Job it follows.
	mine, _ := DesiredJob(a, want, JobImages{Tools: "tools", Nix: "nix"})
	mine.Name = want.Name + "-own"
	_ = controllerutil.SetControllerReference(a, mine, scheme)
	if err := c.Create(context.Background(), mine); err != nil {
		t.Fatal(err)
	}
	own := want
	own.Name = mine.Name
	if state, err := j.Ensure(context.Background(), a, own, ""); err != nil || state.Phase != Running || state.Started {
		t.Errorf("its own running Job: %+v, %v", state, err)
	}
}

// TestARevertedSpecGetsANewBuild: returning to a spec built before names a
// new build (named after the one it follows), never the old one, whose Job
// may still hold an older result; a pass that sees the same status names
// the same build.
func TestARevertedSpecGetsANewBuild(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	app := testApp()
	a := DesiredFor(app, now, false)
	done := &metav1.Time{Time: now}
	app.Status.Build = &herokunixv1.BuildStatus{Hash: a.SpecHash, Job: a.Name, SucceededHash: a.SpecHash, CompletionTime: done}
	app.Spec.Flake = "github:acme/shop?ref=dev"
	b := DesiredFor(app, now, false)
	app.Status.Build = &herokunixv1.BuildStatus{Hash: b.SpecHash, Job: b.Name, SucceededHash: b.SpecHash, CompletionTime: done}
	app.Spec.Flake = testApp().Spec.Flake

	reverted := DesiredFor(app, now, false)
	if reverted.Name == a.Name || reverted.Name == b.Name || reverted.SpecHash != a.SpecHash {
		t.Errorf("revert builds %s (A was %s, B %s)", reverted.Name, a.Name, b.Name)
	}
	if again := DesiredFor(app, now.Add(time.Minute), false); again.Name != reverted.Name {
		t.Errorf("the same status names %s, then %s", reverted.Name, again.Name)
	}
}
