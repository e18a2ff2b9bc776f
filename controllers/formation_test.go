package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

func TestTheOwnerOfAHerokuAppIsTheOneThatReleasedThere(t *testing.T) {
	at := func(sec int64) metav1.Time { return metav1.Unix(sec, 0) }
	claim := func(v int) herokunixv1.HerokuNixAppStatus {
		return herokunixv1.HerokuNixAppStatus{AppClaim: &herokunixv1.AppClaim{AppID: "id", ReleaseID: "r", Version: v}}
	}
	older := herokunixv1.HerokuNixApp{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "x", UID: "1", CreationTimestamp: at(1)}}
	released := herokunixv1.HerokuNixApp{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "y", UID: "2", CreationTimestamp: at(2)},
		Status: claim(7)}
	if got := herokuAppOwner([]herokunixv1.HerokuNixApp{older, released}, ""); got == nil || got.UID != "2" {
		t.Errorf("owner %v, want the one that released", got)
	}
	// The squatter: made first, never released (no working credentials).
	if got := herokuAppOwner([]herokunixv1.HerokuNixApp{older, {ObjectMeta: metav1.ObjectMeta{Name: "c", UID: "3", CreationTimestamp: at(3)}}}, ""); got != nil {
		t.Errorf("owner %s when none released, want none: the oldest must not squat", got.UID)
	}
	// Two that released: the first release wins, whichever was made first.
	second := herokunixv1.HerokuNixApp{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "x", UID: "4", CreationTimestamp: at(0)}, Status: claim(9)}
	if got := herokuAppOwner([]herokunixv1.HerokuNixApp{second, released}, "4"); got == nil || got.UID != "2" {
		t.Errorf("owner %v, want the one with the earlier release (v7 before v9)", got)
	}
	// A resource released to before claims were recorded proves it by its release.
	legacy := herokunixv1.HerokuNixApp{ObjectMeta: metav1.ObjectMeta{Name: "e", UID: "5", CreationTimestamp: at(5)},
		Status: herokunixv1.HerokuNixAppStatus{Release: &herokunixv1.ReleaseStatus{ID: "r", Version: 3}}}
	if got := herokuAppOwner([]herokunixv1.HerokuNixApp{released, legacy}, ""); got == nil || got.UID != "5" {
		t.Errorf("owner %v, want the one whose release (v3) came first", got)
	}
	deleting := released
	deleting.DeletionTimestamp = &metav1.Time{}
	if got := herokuAppOwner([]herokunixv1.HerokuNixApp{deleting}, ""); got != nil {
		t.Errorf("a resource being deleted owns the app: %+v", got)
	}
	if got := herokuAppOwner([]herokunixv1.HerokuNixApp{deleting}, "2"); got == nil || got.UID != "2" {
		t.Error("a resource being deleted does not count itself when asking")
	}
}
