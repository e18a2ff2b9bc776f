package build

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
)

var cacheImages = JobImages{Tools: "tools", Nix: "nix", RegistryHost: "registry.heroku.com"}

func cachedApp() *herokunixv1.HerokuNixApp {
	app := testApp()
	app.UID = "uid-shop"
	app.Spec.Build.Cache = &herokunixv1.BuildCache{Type: herokunixv1.BuildCacheVolume}
	app.Spec.Build.TrustedPublicKeys = []string{"cache.example.org-1:AAAA"}
	return app
}

func desiredJob(t *testing.T, app *herokunixv1.HerokuNixApp) *batchv1.Job {
	t.Helper()
	job, err := DesiredJob(app, DesiredFor(app, time.Now(), false), cacheImages)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

func podContainer(pod corev1.PodSpec, name string) *corev1.Container {
	for _, cs := range [][]corev1.Container{pod.InitContainers, pod.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	return nil
}

// claimsOf are the claims the pod's volumes name.
func claimsOf(pod corev1.PodSpec) []string {
	var names []string
	for _, v := range pod.Volumes {
		if v.PersistentVolumeClaim != nil {
			names = append(names, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return names
}

func TestWithoutACacheTheBuildPodHasNoVolumeOrSeedStep(t *testing.T) {
	for name, cache := range map[string]*herokunixv1.BuildCache{
		"unset": nil, "type None": {Type: herokunixv1.BuildCacheNone},
	} {
		app := testApp()
		app.Spec.Build.Cache = cache
		pod := desiredJob(t, app).Spec.Template.Spec
		if claims := claimsOf(pod); len(claims) > 0 || podContainer(pod, containerSeed) != nil {
			t.Errorf("%s: claims %v, seed container %v; want neither", name, claims, podContainer(pod, containerSeed) != nil)
		}
		if build := podContainer(pod, containerBuild); slices.Contains(build.Args, "--cache") {
			t.Errorf("%s: build args %q", name, build.Args)
		}
		if DesiredCacheClaim(app, "nix") != nil {
			t.Errorf("%s: a claim is desired", name)
		}
	}
}

// TestACacheVolumeIsSeededThenMountedAtNix: the pod's cache step runs
// after tools and before the build, in the Nix image, with the volume
// beside the image's own /nix and no key; the build mounts it at /nix.
func TestACacheVolumeIsSeededThenMountedAtNix(t *testing.T) {
	app := cachedApp()
	app.Spec.Build.Cache.Size = ptr.To(resource.MustParse("20Gi"))
	pod := desiredJob(t, app).Spec.Template.Spec
	claim := CacheClaimName(app, "nix")
	if claims := claimsOf(pod); !slices.Equal(claims, []string{claim}) {
		t.Fatalf("claims %v, want [%s]", claims, claim)
	}
	var order []string
	for _, c := range pod.InitContainers {
		order = append(order, c.Name)
	}
	if !slices.Equal(order, []string{containerTools, containerSeed, containerBuild}) {
		t.Fatalf("init containers %v", order)
	}
	seed := podContainer(pod, containerSeed)
	if seed.Image != "nix" || seed.Command[0] != toolsDir+"/manager" || seed.Args[0] != "prepare-cache" {
		t.Errorf("seed container runs %s %q %q", seed.Image, seed.Command, seed.Args)
	}
	if !strings.Contains(strings.Join(seed.Args, " "), "--budget 21474836480") ||
		!strings.Contains(strings.Join(seed.Args, " "), "--trusted-public-key cache.example.org-1:AAAA") {
		t.Errorf("seed args %q lack the budget or the trusted key", seed.Args)
	}
	if !slices.ContainsFunc(seed.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == volCache && m.MountPath == cacheMountDir && m.SubPath == ""
	}) || slices.ContainsFunc(seed.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == nixDir }) {
		t.Errorf("seed mounts %v: want the volume at %s and the image's /nix left alone", seed.VolumeMounts, cacheMountDir)
	}
	build := podContainer(pod, containerBuild)
	if !slices.ContainsFunc(build.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == volCache && m.MountPath == nixDir && m.SubPath == "nix" && !m.ReadOnly
	}) || !slices.Contains(build.Args, "--cache") {
		t.Errorf("build mounts %v args %q: want the volume's nix directory (only) at /nix and --cache", build.VolumeMounts, build.Args)
	}
	if !slices.Contains(seed.Args, "/cache/nix") {
		t.Errorf("seed args %q: want the store at /cache/nix, beside the record the build cannot see", seed.Args)
	}
	if push := podContainer(pod, containerPush); slices.ContainsFunc(push.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volCache }) {
		t.Errorf("the push container mounts the cache")
	}

	want := DesiredCacheClaim(app, "nix")
	if want.Name != claim || want.Namespace != app.Namespace || !slices.Equal(want.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("claim %s/%s modes %v", want.Namespace, want.Name, want.Spec.AccessModes)
	}
	if got := want.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("20Gi")) != 0 {
		t.Errorf("claim asks for %s, want 20Gi", got.String())
	}
}

// TestTheHerokuKeyNeverReachesTheCacheStep: the cache container gets no
// environment at all and mounts neither the credentials nor nix.conf.
func TestTheHerokuKeyNeverReachesTheCacheStep(t *testing.T) {
	app := cachedApp()
	app.Spec.Build.NixConfigSecretRef = &herokunixv1.SecretKeyRef{Name: "nix-conf", Key: "nix.conf"}
	pod := desiredJob(t, app).Spec.Template.Spec
	seed := podContainer(pod, containerSeed)
	if len(seed.Env) > 0 || len(seed.EnvFrom) > 0 {
		t.Errorf("cache container environment %v %v", seed.Env, seed.EnvFrom)
	}
	for _, m := range seed.VolumeMounts {
		if m.Name != volTools && m.Name != volCache {
			t.Errorf("cache container mounts %s", m.Name)
		}
	}
}

// TestCacheClaimsAreNeverShared: two resources (of one namespace or of
// two, sharing a long name prefix, or a resource made again under its
// name) never mount one claim; one resource gets a new claim when what the
// claim was made with changes, and keeps it otherwise.
func TestCacheClaimsAreNeverShared(t *testing.T) {
	a := cachedApp()
	otherNS := a.DeepCopy()
	otherNS.Namespace, otherNS.UID = "team-b", "uid-shop-b"
	madeAgain := a.DeepCopy()
	madeAgain.UID = "uid-shop-2"
	long1, long2 := sharedPrefixApps()
	for _, x := range []*herokunixv1.HerokuNixApp{long1, long2} {
		x.Spec.Build.Cache = &herokunixv1.BuildCache{Type: herokunixv1.BuildCacheVolume}
	}
	seen := map[string]string{}
	for _, x := range []*herokunixv1.HerokuNixApp{a, otherNS, madeAgain, long1, long2} {
		claims := claimsOf(desiredJob(t, x).Spec.Template.Spec)
		if len(claims) != 1 {
			t.Fatalf("%s/%s mounts claims %v", x.Namespace, x.Name, claims)
		}
		who := x.Namespace + "/" + x.Name + " (" + string(x.UID) + ")"
		if prev, ok := seen[claims[0]]; ok {
			t.Errorf("%s and %s mount the same claim %s", prev, who, claims[0])
		}
		seen[claims[0]] = who
		if len(claims[0]) > 63 {
			t.Errorf("claim name %s is longer than a label value may be", claims[0])
		}
	}

	base := CacheClaimName(a, "nix")
	for name, change := range map[string]func(*herokunixv1.HerokuNixApp){
		"size":          func(x *herokunixv1.HerokuNixApp) { x.Spec.Build.Cache.Size = ptr.To(resource.MustParse("50Gi")) },
		"storage class": func(x *herokunixv1.HerokuNixApp) { x.Spec.Build.Cache.StorageClassName = ptr.To("fast") },
		"nix image":     func(x *herokunixv1.HerokuNixApp) { x.Spec.Build.Image = "nixos/nix:2.30.0" },
	} {
		x := a.DeepCopy()
		change(x)
		if CacheClaimName(x, nixImageFor(x, cacheImages)) == base {
			t.Errorf("a new %s keeps claim %s", name, base)
		}
	}
	x := a.DeepCopy()
	x.Spec.Flake = "github:acme/shop?ref=next"
	x.Spec.Build.Cache.Size = ptr.To(herokunixv1.DefaultBuildCacheSize)
	if got := CacheClaimName(x, "nix"); got != base {
		t.Errorf("a new flake ref (or the default size stated) moves the claim from %s to %s", base, got)
	}
}

// TestEnsureMakesTheClaimOwnedAndDeletesOldOnes: starting a build makes
// the resource's claim, controlled by the resource; claims it made for an
// earlier size are deleted, another resource's claims are left alone, and
// a claim of the desired name it does not control is refused.
func TestEnsureMakesTheClaimOwnedAndDeletesOldOnes(t *testing.T) {
	scheme := testScheme(t)
	ctx := context.Background()
	app := cachedApp()
	old := app.DeepCopy()
	old.Spec.Build.Cache.Size = ptr.To(resource.MustParse("5Gi"))
	oldClaim := DesiredCacheClaim(old, "nix")
	oldClaim.OwnerReferences = []metav1.OwnerReference{{APIVersion: herokunixv1.GroupVersion.String(), Kind: "HerokuNixApp",
		Name: app.Name, UID: app.UID, Controller: ptr.To(true)}}
	other := cachedApp()
	other.UID = types.UID("uid-other")
	otherClaim := DesiredCacheClaim(other, "nix")
	otherClaim.Labels[LabelApp] = app.Name // same labels, another controller
	otherClaim.OwnerReferences = []metav1.OwnerReference{{APIVersion: herokunixv1.GroupVersion.String(), Kind: "HerokuNixApp",
		Name: app.Name, UID: other.UID, Controller: ptr.To(true)}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(oldClaim, otherClaim).Build()
	j := &JobBuilder{Client: c, APIReader: c, Scheme: scheme, Images: cacheImages}

	if _, err := j.Ensure(ctx, app, DesiredFor(app, time.Now(), false), ""); err != nil {
		t.Fatal(err)
	}
	var claim corev1.PersistentVolumeClaim
	if err := c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: CacheClaimName(app, "nix")}, &claim); err != nil {
		t.Fatalf("the claim was not made: %v", err)
	}
	if !metav1.IsControlledBy(&claim, app) {
		t.Errorf("the claim's owners %v do not name the resource as controller", claim.OwnerReferences)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(oldClaim), &corev1.PersistentVolumeClaim{}); err == nil {
		t.Errorf("the claim made for the old size is still there")
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(otherClaim), &corev1.PersistentVolumeClaim{}); err != nil {
		t.Errorf("another resource's claim was deleted: %v", err)
	}

	// Turning the cache off deletes the claim at the next build.
	app.Spec.Build.Cache.Type = herokunixv1.BuildCacheNone
	app.Spec.Build.Cache.Size = nil
	next := DesiredFor(app, time.Now(), false)
	next.Name += "-next"
	if _, err := j.Ensure(ctx, app, next, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(&claim), &corev1.PersistentVolumeClaim{}); err == nil {
		t.Errorf("the claim outlived the cache being turned off")
	}

	// A claim of the desired name that another resource controls is
	// never mounted.
	squatter := cachedApp()
	squatted := DesiredCacheClaim(squatter, "nix")
	squatted.Labels[LabelApp] = "someone-else"
	squatted.OwnerReferences = []metav1.OwnerReference{{APIVersion: herokunixv1.GroupVersion.String(), Kind: "HerokuNixApp",
		Name: "someone-else", UID: "uid-someone-else", Controller: ptr.To(true)}}
	c2 := fake.NewClientBuilder().WithScheme(scheme).WithObjects(squatted).Build()
	j2 := &JobBuilder{Client: c2, APIReader: c2, Scheme: scheme, Images: cacheImages}
	if _, err := j2.Ensure(ctx, squatter, DesiredFor(squatter, time.Now(), false), ""); err == nil || !strings.Contains(err.Error(), "not this resource's") {
		t.Errorf("Ensure with a squatted claim: %v", err)
	}
	var jobs batchv1.JobList
	if err := c2.List(ctx, &jobs); err != nil || len(jobs.Items) > 0 {
		t.Errorf("a Job was made (%d, %v) though its claim is another's", len(jobs.Items), err)
	}
}
