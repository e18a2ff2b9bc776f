package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HerokuNixAppSpec says which flake to build and which Heroku app runs it.
// The nix.conf Secret is readable by every derivation builder, so it must not
// be the Secret that holds the Heroku key (any key of it).
// +kubebuilder:validation:XValidation:rule="!has(self.build) || !has(self.build.nixConfigSecretRef) || self.build.nixConfigSecretRef.name != self.credentialsSecretRef.name",message="nixConfigSecretRef must not name the credentials Secret: whatever it holds is readable by all build-time code",fieldPath=".build.nixConfigSecretRef.name"
// +kubebuilder:validation:XValidation:rule="!has(self.config) || self.config.all(v, !has(v.valueFrom) || !has(v.valueFrom.secretKeyRef) || v.valueFrom.secretKeyRef.name != self.credentialsSecretRef.name)",message="config must not read the credentials Secret: the Heroku API key does not belong in the app's environment",fieldPath=".config"
// +kubebuilder:validation:XValidation:rule="has(self.flake) != has(self.promoteFrom)",message="set exactly one of flake (build the images) and promoteFrom (take the images another HerokuNixApp runs)",fieldPath=".flake"
// +kubebuilder:validation:XValidation:rule="!has(self.promoteFrom) || !has(self.build) || [has(self.build.image), has(self.build.substituters), has(self.build.trustedPublicKeys), has(self.build.nixConfigSecretRef), has(self.build.resources), has(self.build.nodeSelector), has(self.build.tolerations), has(self.build.affinity), has(self.build.priorityClassName), has(self.build.serviceAccountName)].all(set, !set)",message="build must not be set with promoteFrom: a promotion builds nothing",fieldPath=".build"
// +kubebuilder:validation:XValidation:rule="has(self.promoteFrom) || has(self.processes)",message="processes is required when building (flake)",fieldPath=".processes"
// +kubebuilder:validation:XValidation:rule="has(self.promoteFrom) || !has(self.processes) || self.processes.all(k, has(self.processes[k].attribute))",message="every process needs an attribute when building (flake)",fieldPath=".processes"
// +kubebuilder:validation:XValidation:rule="!has(self.promoteFrom) || !has(self.processes) || self.processes.all(k, !has(self.processes[k].attribute) && !has(self.processes[k].command) && !has(self.processes[k].kind))",message="with promoteFrom, processes set only quantity and size: the images (and what they run) come from the source",fieldPath=".processes"
type HerokuNixAppSpec struct {
	// AppName is the Heroku app to release to. It must already exist, be a
	// Cedar-generation app (Fir apps take no container images) and use the
	// container stack. The pattern is Heroku's own (its Platform API schema):
	// 3 to 30 characters, no trailing dash.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=30
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9-]{1,28}[a-z0-9]$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="appName is immutable; create a new HerokuNixApp to deploy to another app"
	// +required
	AppName string `json:"appName"`

	// Flake is any flake reference Nix accepts, e.g. github:acme/shop?ref=main.
	// A reference without a pinned rev is re-resolved every interval.
	// What the build would refuse is refused here: whitespace and control
	// characters, a leading '-', a '#' fragment, more than 1024 bytes.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^[^\p{Z}\p{Cc}]+$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('-')",message="flake must not start with '-': Nix would read it as an option"
	// +kubebuilder:validation:XValidation:rule="!self.contains('#')",message="flake must not contain '#': give the attribute per process instead"
	// +kubebuilder:validation:XValidation:rule="size(bytes(self)) <= 1024",message="flake must be at most 1024 bytes long"
	// Exactly one of flake and promoteFrom is set.
	// +optional
	Flake string `json:"flake,omitempty"`

	// PromoteFrom takes the images from another HerokuNixApp of this
	// namespace instead of building: once it is Ready, the exact image IDs
	// it runs are copied into this app's repositories and released here,
	// with no Nix build (see docs/promotion.md). Exactly one of flake and
	// promoteFrom is set.
	// +optional
	PromoteFrom *PromotionSource `json:"promoteFrom,omitempty"`

	// Processes maps each Heroku process type (web, worker, release, …) to the
	// flake output that provides its image. A "release" process runs as
	// Heroku's release phase. Required when building; with promoteFrom it
	// may only set quantity and size of the types the source runs.
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[a-z][a-z0-9_-]{0,29}$'))",message="process types must start with a lowercase letter and contain only lowercase letters, digits, '-' and '_' (at most 30 characters)"
	// +optional
	Processes map[string]Process `json:"processes,omitempty"`

	// Config are Heroku config vars this resource manages, each a literal
	// value or a key of a Secret or ConfigMap in this namespace (see
	// docs/config-vars.md). herokunix sets, changes and removes only these
	// (a var removed from this list is removed from the app), one release
	// per change, and leaves every other config var of the app alone.
	// Names follow Heroku's advice (Dev Center "Configuration and Config
	// Vars"): letters, digits and '_', not starting with a digit, "__" or
	// "HEROKU_" (names Heroku sets itself, the API key among them).
	// +kubebuilder:validation:MaxItems=128
	// +listType=map
	// +listMapKey=name
	// +optional
	Config []ConfigVar `json:"config,omitempty"`

	// CredentialsSecretRef names the Secret, in this namespace, that holds the
	// Heroku API key.
	// +required
	CredentialsSecretRef SecretKeyRef `json:"credentialsSecretRef"`

	// Interval is how often moving flake refs are re-resolved and the Heroku
	// app is checked for drift.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="interval must be at least 1m: every resync spends the account's Heroku API budget"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// Suspend stops reconciliation; what runs on Heroku is left as it is.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// Build tunes the in-cluster Nix build.
	// +optional
	Build BuildOptions `json:"build,omitempty"`

	// DeletionPolicy says what happens to the Heroku app when this resource
	// is deleted: Retain leaves it running, ScaleToZero scales every process
	// type to zero. The app itself is never deleted.
	// +kubebuilder:validation:Enum=Retain;ScaleToZero
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// DriftPolicy says what to do when Heroku no longer runs the release this
	// resource made (someone released by hand): Correct releases the built
	// images again, Observe only reports it.
	// +kubebuilder:validation:Enum=Correct;Observe
	// +kubebuilder:default=Correct
	// +optional
	DriftPolicy DriftPolicy `json:"driftPolicy,omitempty"`
}

// DefaultInterval is spec.interval's default.
const DefaultInterval = 10 * time.Minute

// IntervalDuration is spec.interval, or its default when unset.
func (s *HerokuNixAppSpec) IntervalDuration() time.Duration {
	if s.Interval == nil || s.Interval.Duration <= 0 {
		return DefaultInterval
	}
	return s.Interval.Duration
}

// Process is one Heroku process type.
type Process struct {
	// Attribute is the flake output to build, e.g. packages.x86_64-linux.web.
	// Required when building (flake); not set with promoteFrom.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_][A-Za-z0-9_.'"+-]*$`
	// +optional
	Attribute string `json:"attribute,omitempty"`

	// Command starts the process when the output is a plain package (closure
	// mode). A relative first element is taken inside the package, e.g.
	// bin/worker. Images built by dockerTools or nix2container bring their own.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=4096
	// +optional
	Command []string `json:"command,omitempty"`

	// Kind overrides the detection of what the output is.
	// +kubebuilder:validation:Enum=docker-archive;nix2container;closure
	// +optional
	Kind string `json:"kind,omitempty"`

	// Quantity is the number of dynos. Unset leaves Heroku's value alone.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Quantity *int32 `json:"quantity,omitempty"`

	// Size is the dyno size, e.g. standard-1X. Unset leaves Heroku's value alone.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9-]*$`
	// +optional
	Size string `json:"size,omitempty"`
}

// SecretKeyRef names one key of a Secret in the resource's namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// Key in the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +kubebuilder:default=apiKey
	// +optional
	Key string `json:"key,omitempty"`
}

// KeyOrDefault is Key, or the CRD's default when the object was made
// without the API server's defaulting (in tests, or by a client-side tool).
func (r SecretKeyRef) KeyOrDefault() string {
	if r.Key == "" {
		return "apiKey"
	}
	return r.Key
}

// ConfigVar is one Heroku config var: a literal value or a key of a
// Secret or ConfigMap, as a container's env entry is.
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="set exactly one of value and valueFrom"
type ConfigVar struct {
	// Name of the config var.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('__')",message="config var names must not start with '__' (Heroku reserves them)"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('HEROKU_')",message="config var names must not start with HEROKU_: Heroku sets those itself, and an API key does not belong in an app's environment"
	// +required
	Name string `json:"name"`

	// Value is a literal value (it is stored in this resource: put
	// secrets in a Secret and use valueFrom).
	// +kubebuilder:validation:MaxLength=32768
	// +optional
	Value *string `json:"value,omitempty"`

	// ValueFrom reads the value from a Secret or ConfigMap of this
	// namespace; a change to it is applied at once (they are watched).
	// +optional
	ValueFrom *ConfigVarSource `json:"valueFrom,omitempty"`
}

// ConfigVarSource names where a config var's value is read.
// +kubebuilder:validation:XValidation:rule="has(self.secretKeyRef) != has(self.configMapKeyRef)",message="set exactly one of secretKeyRef and configMapKeyRef"
type ConfigVarSource struct {
	// SecretKeyRef selects a key of a Secret.
	// +optional
	SecretKeyRef *KeyRef `json:"secretKeyRef,omitempty"`
	// ConfigMapKeyRef selects a key of a ConfigMap (data or binaryData).
	// +optional
	ConfigMapKeyRef *KeyRef `json:"configMapKeyRef,omitempty"`
}

// KeyRef names a key of a Secret or ConfigMap in the resource's namespace.
type KeyRef struct {
	// Name of the Secret or ConfigMap.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`
	// Key in its data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +required
	Key string `json:"key"`
}

// PromotionSource names the HerokuNixApp whose images are promoted.
type PromotionSource struct {
	// Name of a HerokuNixApp in this namespace (deploying another Heroku
	// app).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// RequireApproval holds each promotion until a person approves it by
	// setting the annotation herokunix.dev/approve-promotion to the
	// source's revision (status.revision of the source).
	// +optional
	RequireApproval bool `json:"requireApproval,omitempty"`
}

// BuildOptions tunes the Nix build. Everything is optional.
type BuildOptions struct {
	// Image is the Nix image the build container runs.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// Substituters are extra binary caches.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^(https?|s3|file)://[^\s]+$`
	// +optional
	Substituters []string `json:"substituters,omitempty"`

	// TrustedPublicKeys are the signing keys of the substituters.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[^\s:]+:[A-Za-z0-9+/=]+$`
	// +optional
	TrustedPublicKeys []string `json:"trustedPublicKeys,omitempty"`

	// NixConfigSecretRef names a Secret key holding extra nix.conf lines (for
	// example access-tokens for private flakes). Only that key is mounted,
	// into the build container only, but there every derivation builder and
	// all other build-time code can read it: put nothing else in it. It must
	// not name the Secret of credentialsSecretRef.
	// +optional
	NixConfigSecretRef *SecretKeyRef `json:"nixConfigSecretRef,omitempty"`

	// Timeout bounds one build.
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('6h')",message="build timeout must be between 1m and 6h"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Resources of the build container. A change runs a failed build
	// again (e.g. more memory after OOMKilled).
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// MaxLayers is the layer budget of every image pushed for this
	// resource: an image with more layers is re-layered to fit (see
	// docs/layers.md). Heroku reportedly fails to boot images of about 40
	// layers or more, hence the maximum.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=40
	// +kubebuilder:default=32
	// +optional
	MaxLayers *int32 `json:"maxLayers,omitempty"`

	// Cache keeps the build's Nix store between builds of this resource,
	// so a rebuild fetches and builds only what changed (see
	// docs/cache.md). Off by default: every build starts from the Nix
	// image's store. Like placement, it never starts a new build.
	// +optional
	Cache *BuildCache `json:"cache,omitempty"`

	// NodeSelector places the build pod on matching nodes (e.g. builders
	// with large disks). Where a build runs does not change what it builds,
	// so placement fields (and resources) never rebuild a spec that built;
	// a change runs a failed build again.
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations let the build pod run on tainted (dedicated) nodes.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity constrains the build pod's node (and pod) placement.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// PriorityClassName is the build pod's PriorityClass.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// ServiceAccountName runs the build pod as this ServiceAccount of the
	// namespace, for identities bound to it outside the Kubernetes API
	// (e.g. a workload identity a binary cache trusts). Its API token is
	// still never mounted: the build container runs the flake's code.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// BuildCacheType is where builds keep their Nix store.
type BuildCacheType string

const (
	// BuildCacheNone keeps nothing: each build starts from the Nix image.
	BuildCacheNone BuildCacheType = "None"
	// BuildCacheVolume keeps /nix on a PersistentVolumeClaim of the
	// resource's own.
	BuildCacheVolume BuildCacheType = "Volume"
)

// DefaultBuildCacheSize is spec.build.cache.size's default.
var DefaultBuildCacheSize = resource.MustParse("10Gi")

// BuildCache keeps the Nix store of one resource's builds.
// +kubebuilder:validation:XValidation:rule="self.type == 'Volume' || (!has(self.size) && !has(self.storageClassName))",message="size and storageClassName apply to cache type Volume only"
type BuildCache struct {
	// Type is None (each build starts from the Nix image's store) or
	// Volume: a PersistentVolumeClaim made for this resource alone, in its
	// namespace, holds /nix for its build pods. It is seeded from the Nix
	// image on first use, checked before every build (only paths signed by
	// a trusted key or content-addressed are kept) and deleted with the
	// resource. Two resources never share one.
	// +kubebuilder:validation:Enum=None;Volume
	// +kubebuilder:default=None
	// +optional
	Type BuildCacheType `json:"type,omitempty"`

	// Size of the claim (default 10Gi). When the store holds more than
	// 80% of it before a build, everything but the last successful
	// build's build-time closure is collected. Changing it (or the storage
	// class, or the Nix image) starts a new, empty claim and deletes the
	// old one.
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1Gi')) >= 0",message="cache size must be at least 1Gi"
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`

	// StorageClassName of the claim; the cluster's default class if unset.
	// The claim is ReadWriteOnce.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// Enabled reports whether c asks for a cache volume.
func (c *BuildCache) Enabled() bool {
	return c != nil && c.Type == BuildCacheVolume
}

// SizeOrDefault is Size, or DefaultBuildCacheSize when unset.
func (c *BuildCache) SizeOrDefault() resource.Quantity {
	if c == nil || c.Size == nil {
		return DefaultBuildCacheSize.DeepCopy()
	}
	return c.Size.DeepCopy()
}

// DeletionPolicy is what deleting the resource does to the Heroku app.
type DeletionPolicy string

const (
	DeletionPolicyRetain      DeletionPolicy = "Retain"
	DeletionPolicyScaleToZero DeletionPolicy = "ScaleToZero"
)

// DriftPolicy is what a detected drift leads to.
type DriftPolicy string

const (
	DriftPolicyCorrect DriftPolicy = "Correct"
	DriftPolicyObserve DriftPolicy = "Observe"
)

// HerokuNixAppStatus is what the controller observed and did.
type HerokuNixAppStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling, Stalled, Built, Released, Serving.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Revision is the locked revision of the flake that was built.
	// +optional
	Revision string `json:"revision,omitempty"`

	// ShortRevision is the first 12 characters of Revision, for display.
	// +optional
	ShortRevision string `json:"shortRevision,omitempty"`

	// LockedFlake is the locked flake reference that was built.
	// +optional
	LockedFlake string `json:"lockedFlake,omitempty"`

	// Images are the pushed images per process type.
	// +optional
	Images map[string]ImageStatus `json:"images,omitempty"`

	// Build is the latest build.
	// +optional
	Build *BuildStatus `json:"build,omitempty"`

	// Release is the latest Heroku release this resource made.
	// +optional
	Release *ReleaseStatus `json:"release,omitempty"`

	// ReleaseIntent is a release herokunix asked Heroku for (or is about
	// to) and has not yet seen the outcome of. It is written before the
	// request, so a pass that starts after a crash or a lost answer knows a
	// release of these images may exist: it waits for a pending release
	// made since, and otherwise sends the images again, which Heroku
	// ignores for the types that already run them.
	// +optional
	ReleaseIntent *ReleaseIntent `json:"releaseIntent,omitempty"`

	// Serving is what the web dynos of Release were seen doing after it
	// succeeded: looked at a bounded number of times per release, never on
	// a resync.
	// +optional
	Serving *ServingStatus `json:"serving,omitempty"`
	// LastDriftCheck is when herokunix last saw that Heroku runs the
	// release it made (it read the releases made since, or made the
	// release), and for which generation of the spec. It reads them again
	// once spec.interval has passed, the spec changed, or a reconcile was
	// requested, whatever else wakes it (a build Job ending, a Secret), so
	// a resource at rest spends at most one Heroku read an interval. On
	// status, it holds across controller restarts.
	// +optional
	LastDriftCheck *DriftCheck `json:"lastDriftCheck,omitempty"`

	// AppliedFormation fingerprints the quantities and sizes last applied,
	// so a resync does not read the formation back from Heroku.
	// +optional
	AppliedFormation string `json:"appliedFormation,omitempty"`

	// Config is what this resource manages of the app's config vars: their
	// names and a fingerprint of names and values (never a value).
	// +optional
	Config *ConfigStatus `json:"config,omitempty"`

	// Promotion says where the images in status.images came from when
	// they were promoted (spec.promoteFrom) rather than built.
	// +optional
	Promotion *PromotionStatus `json:"promotion,omitempty"`

	// WebURL is the app's URL.
	// +optional
	WebURL string `json:"webURL,omitempty"`

	// LastHandledReconcileAt is the last reconcile-now annotation value handled.
	// +optional
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`

	// AppClaim is this resource's proof that it deploys spec.appName: the
	// first release it made there, with credentials that worked. Of the
	// resources naming one Heroku app, the one with the earliest claim owns
	// it; one without a claim never keeps another from deploying.
	// +optional
	AppClaim *AppClaim `json:"appClaim,omitempty"`
}

// AppClaim is the proof that a resource released to its Heroku app.
type AppClaim struct {
	// AppID is Heroku's id of the app, read with this resource's
	// credentials (a name can be given to a new app; an id cannot).
	AppID string `json:"appID"`
	// ReleaseID and Version are the first release this resource made (or
	// found running its images) on that app.
	ReleaseID string `json:"releaseID"`
	Version   int    `json:"version"`
}

// ImageStatus identifies one pushed image.
type ImageStatus struct {
	// ImageID is the config digest, which Heroku releases.
	ImageID string `json:"imageID"`
	// Digest is the manifest digest in the registry.
	Digest string `json:"digest"`
}

// BuildStatus describes a build.
type BuildStatus struct {
	// Hash identifies what was built: the flake, the attributes and the options.
	Hash string `json:"hash"`
	// Job is the build Job's name (empty with the local builder).
	// +optional
	Job string `json:"job,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// SucceededHash is the Hash of the build that made status.images.
	// +optional
	SucceededHash string `json:"succeededHash,omitempty"`
	// Message is the end of the build log when the build failed.
	// +optional
	Message string `json:"message,omitempty"`
	// Repush, on a finished build, asks for a new build of the same spec,
	// in the foreground and without skipping an unchanged revision, so that
	// its push uploads the images again: the release that ran them
	// expired, and Heroku destroys an expired release's artifacts. On a
	// running build it says that build is that re-push. Cleared when the
	// build ends.
	// +optional
	Repush bool `json:"repush,omitempty"`
	// Inputs fingerprints what the build ran with besides what it builds:
	// the build container's resources and placement, and the versions of
	// the Secrets it reads (credentials, nix.conf). A failed build is run
	// again when they change.
	// +optional
	Inputs string `json:"inputs,omitempty"`
	// TransientFailures counts the builds of this spec and inputs in a
	// row that failed for a reason that may pass (an evicted pod, the
	// deadline, a network error while fetching).
	// +optional
	TransientFailures int32 `json:"transientFailures,omitempty"`
	// RetryTime, on a build that failed for a reason that may pass, is
	// when it is tried again. Unset when no retry is due: the failure is
	// the build's own, or the retries are spent.
	// +optional
	RetryTime *metav1.Time `json:"retryTime,omitempty"`
}

// ReleaseStatus describes a Heroku release.
type ReleaseStatus struct {
	ID string `json:"id"`
	// Version is Heroku's release number.
	Version int `json:"version"`
	// Name is the release as Heroku shows it, e.g. v42.
	Name string `json:"name"`
	// Status is pending, succeeded, failed or expired (Heroku destroyed the
	// release's artifacts), or empty (a legacy release with no status).
	Status string `json:"status"`
	// Images are the image IDs released, per process type.
	// +optional
	Images map[string]string `json:"images,omitempty"`
	// OutputTail is the end of the release phase's output when it failed
	// (at most 20 lines, control characters and the API key removed), as
	// Heroku streamed it; empty when Heroku had none (the release image
	// must contain curl for Heroku to stream it).
	// +optional
	OutputTail string `json:"outputTail,omitempty"`
}

// Dyno states this resource records, as the Platform API names them (the
// dyno schema's "state"); ServingGaveUp is herokunix's own.
const (
	DynoStateStarting = "starting"
	DynoStateUp       = "up"
	DynoStateCrashed  = "crashed"
	// ServingGaveUp: the web dynos were not up after the bounded looks.
	ServingGaveUp = "gave-up"
)

// ServingStatus is what the web dynos of one release were seen doing.
type ServingStatus struct {
	// Release is the version of the release whose web dynos were looked at.
	Release int `json:"release"`
	// State is starting (still looking), up, crashed, or gave-up.
	// +kubebuilder:validation:Enum=starting;up;crashed;gave-up
	State string `json:"state"`
	// Looks is how many times the dynos were listed for this release.
	Looks int32 `json:"looks"`
	// Dynos are the release's web dynos and their states as last seen,
	// e.g. "web.1 up, web.2 starting".
	// +optional
	Dynos string `json:"dynos,omitempty"`
}

// ConfigStatus is what herokunix set of the app's config vars.
type ConfigStatus struct {
	// Keys are the config vars this resource set on Heroku, and so owns:
	// the only ones it ever changes or removes.
	// +listType=set
	// +optional
	Keys []string `json:"keys,omitempty"`
	// Fingerprint is an HMAC-SHA256, keyed with the app's Heroku API key,
	// of the names and values applied: it says whether the values changed
	// without storing them, and cannot be checked against a guessed value
	// without the key.
	// +optional
	Fingerprint string `json:"fingerprint,omitempty"`
	// Release is the version of the latest release this resource made by
	// changing config vars (0: none); a change of a managed var in a later
	// release is someone else's (drift).
	// +optional
	Release int `json:"release,omitempty"`
}

// PromotionStatus is the source of promoted images.
type PromotionStatus struct {
	// Source is the HerokuNixApp the images were promoted from.
	Source string `json:"source"`
	// SourceApp is its Heroku app.
	SourceApp string `json:"sourceApp"`
	// Revision is the source's revision that was promoted.
	Revision string `json:"revision"`
}

// DriftCheck is when herokunix last looked for drift.
type DriftCheck struct {
	// Time is when it looked.
	Time metav1.Time `json:"time"`
	// Generation is the resource's generation it looked for.
	Generation int64 `json:"generation"`
}

// ReleaseIntent is a release of images herokunix has asked for.
type ReleaseIntent struct {
	// Images are the image IDs asked for, per process type.
	Images map[string]string `json:"images"`
	// After is the version of the app's latest release before the request
	// (0: none): a release of these images, if Heroku made one, is newer.
	After int `json:"after"`
}

// HerokuNixApp deploys a Nix flake to a Heroku app as container images.
// +kubebuilder:object:root=true
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: it labels the resource's build Jobs"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.promoteFrom) || self.spec.promoteFrom.name != self.metadata.name",message="spec.promoteFrom must name another HerokuNixApp",fieldPath=".spec.promoteFrom.name"
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=hna,categories=herokunix
// +kubebuilder:printcolumn:name="App",type=string,JSONPath=`.spec.appName`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.shortRevision`
// +kubebuilder:printcolumn:name="From",type=string,JSONPath=`.status.promotion.source`
// +kubebuilder:printcolumn:name="Release",type=string,JSONPath=`.status.release.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="URL",type=string,priority=1,JSONPath=`.status.webURL`
// +kubebuilder:printcolumn:name="Flake",type=string,priority=1,JSONPath=`.spec.flake`
// +kubebuilder:printcolumn:name="Message",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
type HerokuNixApp struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   HerokuNixAppSpec   `json:"spec,omitempty"`
	Status HerokuNixAppStatus `json:"status,omitempty"`
}

// HerokuNixAppList is a list of HerokuNixApps.
// +kubebuilder:object:root=true
type HerokuNixAppList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HerokuNixApp `json:"items"`
}
