package build

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
)

// The cache volume (spec.build.cache.type Volume) as the build pod sees it:
// the cache init container mounts all of it at cacheMountDir (its own /nix
// stays the image's), where the store is the directory cacheSubPath and
// the record of what it checked sits beside it; the build container
// mounts only cacheSubPath, at /nix, and cannot reach the record.
const (
	volCache      = "nix-cache"
	containerSeed = "cache"
	cacheMountDir = "/cache"
	cacheSubPath  = "nix"
	nixDir        = "/nix"
)

// LabelCache marks a build cache claim; its value is the claim's hash.
const LabelCache = "herokunix.dev/build-cache"

// CacheClaimName names the build cache claim of app when its builds run
// the Nix image nixImage, or "" when app has no cache volume. The hash
// covers the resource's UID, so two resources (in one namespace or not,
// or a resource deleted and made again) never name the same claim, and
// what the claim was made with (size, class, image), so a change of any
// makes a new claim rather than reuse one that no longer fits: a claim
// cannot shrink or change class, and a store seeded from another image
// holds another Nix.
func CacheClaimName(app *herokunixv1.HerokuNixApp, nixImage string) string {
	c := app.Spec.Build.Cache
	if !c.Enabled() {
		return ""
	}
	size := c.SizeOrDefault()
	class := ""
	if c.StorageClassName != nil {
		class = *c.StorageClassName
	}
	const maxPrefix = 63 - len("-nix-") - 10
	prefix := app.Name[:min(len(app.Name), maxPrefix)]
	for len(prefix) > 0 && (prefix[len(prefix)-1] == '-' || prefix[len(prefix)-1] == '.') {
		prefix = prefix[:len(prefix)-1]
	}
	return prefix + "-nix-" + Fingerprint(string(app.UID), size.String(), class, nixImage)[:10]
}

// DesiredCacheClaim is app's build cache claim for builds that run
// nixImage, or nil when app has no cache volume. ReadWriteOnce: the
// volume is on one node at a time, where a lock file orders the build
// pods that use it (docs/cache.md).
func DesiredCacheClaim(app *herokunixv1.HerokuNixApp, nixImage string) *corev1.PersistentVolumeClaim {
	name := CacheClaimName(app, nixImage)
	if name == "" {
		return nil
	}
	c := app.Spec.Build.Cache
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: app.Namespace,
			Labels: map[string]string{LabelManagedBy: managedBy, LabelApp: app.Name, LabelCache: name},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: c.StorageClassName,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: c.SizeOrDefault(),
			}},
		},
	}
}

// cacheBudget is the store size the cache init container collects above,
// in bytes: the claim's size (its 80% mark is where collection starts).
func cacheBudget(app *herokunixv1.HerokuNixApp) string {
	size := app.Spec.Build.Cache.SizeOrDefault()
	return strconv.FormatInt(size.Value(), 10)
}

// cacheContainer is the init container that makes the cache volume safe
// to build in: it seeds it from the Nix image's /nix on first use and, on
// later uses, puts back the image's own store paths and deletes every path
// that is neither signed by a trusted key nor content-addressed (see
// nixbuild.PrepareCache). It runs in the Nix image, whose own /nix it
// copies from, and runs no user code; like the build container it is never
// given the Heroku key.
func cacheContainer(app *herokunixv1.HerokuNixApp, nixImage string) corev1.Container {
	args := []string{"prepare-cache", "--root", cacheMountDir + "/" + cacheSubPath, "--budget", cacheBudget(app)}
	for _, k := range app.Spec.Build.TrustedPublicKeys {
		args = append(args, "--trusted-public-key", k)
	}
	return corev1.Container{
		Name:    containerSeed,
		Image:   nixImage,
		Command: []string{toolsDir + "/manager"},
		Args:    args,
		VolumeMounts: []corev1.VolumeMount{
			{Name: volTools, MountPath: toolsDir, ReadOnly: true},
			{Name: volCache, MountPath: cacheMountDir},
		},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("250m"),
			corev1.ResourceMemory: resource.MustParse("256Mi"),
		}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// Root, as the store it writes is root's.
		SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false)},
	}
}

// ensureCacheClaim makes app's build cache claim when its builds use one
// and it does not exist yet, owned by app (so it goes with it), and
// deletes app's other cache claims (made for an earlier size, class or
// image, or before the cache was turned off). Claims are read from the
// API server: the manager caches no claims.
func (j *JobBuilder) ensureCacheClaim(ctx context.Context, app *herokunixv1.HerokuNixApp, nixImage string) error {
	want := DesiredCacheClaim(app, nixImage)
	var claims corev1.PersistentVolumeClaimList
	if err := j.APIReader.List(ctx, &claims, client.InNamespace(app.Namespace),
		client.MatchingLabels{LabelManagedBy: managedBy, LabelApp: app.Name}, client.HasLabels{LabelCache}); err != nil {
		return fmt.Errorf("listing build cache claims: %w", err)
	}
	found := false
	for i := range claims.Items {
		claim := &claims.Items[i]
		if !metav1.IsControlledBy(claim, app) {
			continue
		}
		if want != nil && claim.Name == want.Name {
			found = true
			continue
		}
		if err := j.Client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting old build cache claim %s: %w", claim.Name, err)
		}
	}
	if want == nil || found {
		return nil
	}
	if err := controllerutil.SetControllerReference(app, want, j.Scheme); err != nil {
		return fmt.Errorf("owning build cache claim: %w", err)
	}
	err := j.Client.Create(ctx, want)
	if apierrors.IsAlreadyExists(err) {
		// Not listed as app's: a claim of that name that app does not
		// control is never mounted into app's builds.
		var existing corev1.PersistentVolumeClaim
		if err := j.APIReader.Get(ctx, client.ObjectKeyFromObject(want), &existing); err != nil {
			return fmt.Errorf("reading build cache claim %s: %w", want.Name, err)
		}
		if !metav1.IsControlledBy(&existing, app) {
			return fmt.Errorf("build cache claim %s/%s exists and is not this resource's (its controller is not UID %s)", want.Namespace, want.Name, app.UID)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating build cache claim %s: %w", want.Name, err)
	}
	return nil
}

// nixImageFor is the Nix image app's build pod runs: spec.build.image, else
// the default.
func nixImageFor(app *herokunixv1.HerokuNixApp, images JobImages) string {
	if app.Spec.Build.Image != "" {
		return app.Spec.Build.Image
	}
	return images.Nix
}
