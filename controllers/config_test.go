package controllers

import (
	"maps"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/heroku"
)

func TestConfigPatchSendsOnlyWhatDiffersAndRemovesOnlyManagedVars(t *testing.T) {
	current := map[string]string{"SAME": "1", "CHANGED": "old", "GONE": "x", "UNMANAGED": "y"}
	want := map[string]string{"SAME": "1", "CHANGED": "new", "NEW": ""}
	got := configPatch(current, want, []string{"SAME", "CHANGED", "GONE", "ALREADY_GONE"})
	if !slices.Equal(slices.Sorted(maps.Keys(got)), []string{"CHANGED", "GONE", "NEW"}) {
		t.Fatalf("patch keys %v", slices.Sorted(maps.Keys(got)))
	}
	if *got["CHANGED"] != "new" || *got["NEW"] != "" || got["GONE"] != nil {
		t.Errorf("patch %v", got)
	}
	if p := configPatch(current, map[string]string{"SAME": "1"}, []string{"SAME"}); len(p) != 0 {
		t.Errorf("nothing differs, yet the patch is %v", p)
	}
}

func TestConfigDriftReadsHerokusDescriptionsOfManagedVarsOnly(t *testing.T) {
	st := &herokunixv1.ConfigStatus{Keys: []string{"A", "B"}, Release: 10}
	rels := []*heroku.Release{
		{Version: 10, Description: "Set A config vars"}, // this resource's own
		{Version: 11, Description: "Set OTHER config vars"},
		{Version: 12, Description: "Deployed web (0123456789ab)"},
		{Version: 13, Description: "Remove OTHER, B config vars"},
		{Version: 14, Description: "Attach DATABASE (@ref:postgresql-1)"},
	}
	names, by := configDrift(rels, st)
	if !slices.Equal(names, []string{"B"}) || by == nil || by.Version != 13 {
		t.Errorf("drift %v by %+v, want B by v13", names, by)
	}
	if names, _ := configDrift(rels[:3], st); names != nil {
		t.Errorf("drift %v from releases that change no managed var", names)
	}
	if names, _ := configDrift(rels, nil); names != nil {
		t.Errorf("drift %v with no managed var", names)
	}
}

func TestConfigFingerprintDependsOnValuesAndKeyButShowsNeither(t *testing.T) {
	a := configFingerprint("key-1", map[string]string{"A": "secret"})
	if a == configFingerprint("key-1", map[string]string{"A": "other"}) {
		t.Error("a changed value keeps the fingerprint")
	}
	if a == configFingerprint("key-2", map[string]string{"A": "secret"}) {
		t.Error("the fingerprint does not depend on the key")
	}
	if a != configFingerprint("key-1", map[string]string{"A": "secret"}) {
		t.Error("the fingerprint is not stable")
	}
	// Names and values are separated: moving a byte across does not collide.
	if configFingerprint("k", map[string]string{"AB": "C"}) == configFingerprint("k", map[string]string{"A": "BC"}) {
		t.Error("name/value boundary collides")
	}
}

func TestPromotableOnlyWhenTheSourceRunsItsImages(t *testing.T) {
	ready := func() *herokunixv1.HerokuNixApp {
		return &herokunixv1.HerokuNixApp{
			ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Status: herokunixv1.HerokuNixAppStatus{
				ObservedGeneration: 2, Revision: "abc",
				Conditions: []metav1.Condition{{Type: herokunixv1.ConditionReady, Status: metav1.ConditionTrue}},
				Images:     map[string]herokunixv1.ImageStatus{"web": {ImageID: "sha256:1", Digest: "sha256:m"}},
				Release:    &herokunixv1.ReleaseStatus{Status: heroku.ReleaseSucceeded, Images: map[string]string{"web": "sha256:1"}},
			},
		}
	}
	if rev, ok := promotable(ready()); !ok || rev != "abc" {
		t.Fatalf("a Ready source: %q %v", rev, ok)
	}
	for name, spoil := range map[string]func(*herokunixv1.HerokuNixApp){
		"not Ready":                     func(a *herokunixv1.HerokuNixApp) { a.Status.Conditions[0].Status = metav1.ConditionFalse },
		"Ready for an older generation": func(a *herokunixv1.HerokuNixApp) { a.Generation = 3 },
		"release pending":               func(a *herokunixv1.HerokuNixApp) { a.Status.Release.Status = heroku.ReleasePending },
		"built images not released": func(a *herokunixv1.HerokuNixApp) {
			a.Status.Images["web"] = herokunixv1.ImageStatus{ImageID: "sha256:2"}
		},
		"release in flight": func(a *herokunixv1.HerokuNixApp) { a.Status.ReleaseIntent = &herokunixv1.ReleaseIntent{} },
		"never released":    func(a *herokunixv1.HerokuNixApp) { a.Status.Release = nil },
	} {
		a := ready()
		spoil(a)
		if _, ok := promotable(a); ok {
			t.Errorf("%s: promotable", name)
		}
	}
}
