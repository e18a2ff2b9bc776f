package envtest

import (
	"sync"
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
	var mu sync.Mutex
	owner := map[string]string{} // claim name -> resource
	t.Run("namespaces", func(t *testing.T) {
		for _, tc := range []struct {
			ns    string
			names []string
		}{{"first", []string{"shop", "store"}}, {"second", []string{"shop"}}} {
			t.Run(tc.ns, func(t *testing.T) {
				h := newHarness(t)
				h.createSecret()
				for _, name := range tc.names {
					// One Heroku app per resource: a second owner of one
					// app would stall before it builds.
					herokuApp := testHerokuApp
					if name != "shop" {
						herokuApp = "acme-" + name
						h.stub.CreateApp(herokuApp, "container")
					}
					app := h.newApp(name, withCache, func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = herokuApp })
					pod := h.buildJob(app).Spec.Template.Spec
					var claims []string
					for _, v := range pod.Volumes {
						if v.PersistentVolumeClaim != nil {
							claims = append(claims, v.PersistentVolumeClaim.ClaimName)
						}
					}
					who := app.Namespace + "/" + app.Name
					if len(claims) != 1 {
						t.Fatalf("%s's build pod mounts claims %v, want its own one", who, claims)
					}
					var claim corev1.PersistentVolumeClaim
					if err := k8sClient.Get(h.ctx, client.ObjectKey{Namespace: app.Namespace, Name: claims[0]}, &claim); err != nil {
						t.Fatalf("%s's claim %s: %v", who, claims[0], err)
					}
					if !metav1.IsControlledBy(&claim, h.get(app)) || claim.Labels[build.LabelApp] != app.Name {
						t.Errorf("%s's claim is controlled by %v, labelled %v", who, claim.OwnerReferences, claim.Labels)
					}
					mu.Lock()
					// Names differ even across namespaces: they cover the UID.
					if prev, ok := owner[claims[0]]; ok {
						t.Errorf("%s and %s mount claims named %s", prev, who, claims[0])
					}
					owner[claims[0]] = who
					mu.Unlock()
				}
			})
		}
	})
	if len(owner) != 3 {
		t.Errorf("claims %v, want three", owner)
	}
}
