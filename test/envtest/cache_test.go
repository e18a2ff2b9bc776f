package envtest

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
)

// TestBuildCacheClaimsStayWithTheirResource: resources with a cache volume,
// two of one name in two namespaces and a second in one of them, each get
// a claim of their own, in their namespace and controlled by them, and
// their build pods mount that claim and no other.
func TestBuildCacheClaimsStayWithTheirResource(t *testing.T) {
	withCache := func(a *herokunixv1.HerokuNixApp) {
		a.Spec.Build.Cache = &herokunixv1.BuildCache{Type: herokunixv1.BuildCacheVolume}
	}
	h1, h2 := newHarness(t), newHarness(t)
	h1.createSecret()
	h2.createSecret()
	type built struct {
		h   *harness
		app *herokunixv1.HerokuNixApp
	}
	all := []built{{h1, h1.newApp("shop", withCache)}, {h1, h1.newApp("store", withCache)}, {h2, h2.newApp("shop", withCache)}}
	owner := map[string]string{} // claim name -> resource
	for _, b := range all {
		pod := b.h.buildJob(b.app).Spec.Template.Spec
		var claims []string
		for _, v := range pod.Volumes {
			if v.PersistentVolumeClaim != nil {
				claims = append(claims, v.PersistentVolumeClaim.ClaimName)
			}
		}
		who := b.app.Namespace + "/" + b.app.Name
		if len(claims) != 1 {
			t.Fatalf("%s's build pod mounts claims %v, want its own one", who, claims)
		}
		// Names differ even across namespaces: they cover the UID.
		if prev, ok := owner[claims[0]]; ok {
			t.Errorf("%s and %s mount claims named %s", prev, who, claims[0])
		}
		owner[claims[0]] = who
		var claim corev1.PersistentVolumeClaim
		if err := k8sClient.Get(b.h.ctx, client.ObjectKey{Namespace: b.app.Namespace, Name: claims[0]}, &claim); err != nil {
			t.Fatalf("%s's claim %s: %v", who, claims[0], err)
		}
		if !metav1.IsControlledBy(&claim, b.h.get(b.app)) || claim.Labels[build.LabelApp] != b.app.Name {
			t.Errorf("%s's claim is controlled by %v, labelled %v", who, claim.OwnerReferences, claim.Labels)
		}
	}
}
