package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HerokuNixAppSpec says which flake to build and which Heroku app runs it.
// The nix.conf Secret is readable by every derivation builder, so it must not
// be the Secret that holds the Heroku key (any key of it).
// +kubebuilder:validation:XValidation:rule="!has(self.build) || !has(self.build.nixConfigSecretRef) || self.build.nixConfigSecretRef.name != self.credentialsSecretRef.name",message="nixConfigSecretRef must not name the credentials Secret: whatever it holds is readable by all build-time code",fieldPath=".build.nixConfigSecretRef.name"
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
	// +required
	Flake string `json:"flake"`

	// Processes maps each Heroku process type (web, worker, release, …) to the
	// flake output that provides its image. A "release" process runs as
	// Heroku's release phase.
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[a-z][a-z0-9_-]{0,29}$'))",message="process types must start with a lowercase letter and contain only lowercase letters, digits, '-' and '_' (at most 30 characters)"
	// +required
	Processes map[string]Process `json:"processes"`

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
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_][A-Za-z0-9_.'"+-]*$`
	// +required
	Attribute string `json:"attribute"`

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

	// Resources of the build container.
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

	// NodeSelector places the build pod on matching nodes (e.g. builders
	// with large disks). Where a build runs does not change what it builds,
	// so placement fields never start a new build.
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

	// Conditions: Ready, Reconciling, Stalled, Built, Released.
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

	// WebURL is the app's URL.
	// +optional
	WebURL string `json:"webURL,omitempty"`

	// LastHandledReconcileAt is the last reconcile-now annotation value handled.
	// +optional
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`
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
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=hna,categories=herokunix
// +kubebuilder:printcolumn:name="App",type=string,JSONPath=`.spec.appName`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.shortRevision`
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
