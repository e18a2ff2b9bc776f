package build

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
)

// Labels on build Jobs, linking them to their resource.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelApp       = "herokunix.dev/app"
	LabelBuildHash = "herokunix.dev/build-hash"
	managedBy      = "herokunix"
)

// Container names of the build pod.
const (
	containerTools = "tools"
	containerBuild = "build"
	containerPush  = "push"
)

// JobImages are the images the build pod runs.
type JobImages struct {
	// Tools is the controller's own image: it provides the manager binary
	// to the Nix container and runs the push.
	Tools string
	// Nix is the default Nix image for the build container.
	Nix string
	// RegistryHost is Heroku's registry (registry.heroku.com).
	RegistryHost string
	// InsecureRegistry has the push speak plain HTTP to RegistryHost, as
	// the manager's --insecure-registry does (local testing only).
	InsecureRegistry bool
}

const (
	volWorkspace = "workspace"
	volTmp       = "tmp"
	volTools     = "tools"
	volNixConf   = "nix-conf"
	workspaceDir = "/workspace"
	toolsDir     = "/herokunix"
	nixConfDir   = "/etc/herokunix/nix"
)

// Disk the build pod asks for and may fill. Without them a build is
// scheduled onto a node whatever its free disk, and a runaway build fills
// the node's disk until the kubelet evicts other tenants' pods too.
//
// The build container's Nix store lives in its writable layer: the
// build-time closure (compilers, sources, fetched inputs) of a typical
// flake is a few GiB, so it asks for 10Gi. It gets no ephemeral-storage
// limit by default: a limit evicts the pod the moment a large toolchain
// is substituted, and the node's own eviction still bounds it; set one in
// spec.build.resources to cap it. The emptyDirs are bounded instead (a
// full one evicts the pod with a clear message): the workspace holds the
// runtime closure copied out of the store (service closures are rarely
// above a few GiB; 20Gi leaves room for several process types), tmp its
// compressed layers (smaller than the closure) on their way to the
// registry, tools one static binary.
var (
	buildEphemeralStorage = resource.MustParse("10Gi")
	pushEphemeralStorage  = resource.MustParse("1Gi")
	workspaceSizeLimit    = resource.MustParse("20Gi")
	tmpSizeLimit          = resource.MustParse("10Gi")
	toolsSizeLimit        = resource.MustParse("512Mi")
)

func emptyDir(limit resource.Quantity) corev1.VolumeSource {
	return corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &limit}}
}

// buildResources are the build container's resources: spec.build.resources
// when given, else CPU and memory that suit a small build. Either way it
// asks for buildEphemeralStorage unless the spec names ephemeral storage
// (a limit alone makes Kubernetes request the same).
func buildResources(spec *corev1.ResourceRequirements) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("500m"),
		corev1.ResourceMemory: resource.MustParse("1Gi"),
	}}
	if spec != nil {
		r = *spec.DeepCopy()
	}
	_, requested := r.Requests[corev1.ResourceEphemeralStorage]
	_, limited := r.Limits[corev1.ResourceEphemeralStorage]
	if !requested && !limited {
		if r.Requests == nil {
			r.Requests = corev1.ResourceList{}
		}
		r.Requests[corev1.ResourceEphemeralStorage] = buildEphemeralStorage
	}
	return r
}

// ManagedSelector selects the Jobs and Pods of builds, so the manager caches
// only those.
func ManagedSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelManagedBy: managedBy})
}

// DesiredJob is the Job that runs a build. Three containers share a
// workspace: tools copies the manager binary in, build runs Nix (and never
// sees the Heroku key), push assembles and pushes the images (and is the
// only container the key is given to) and writes the result to its
// termination message.
func DesiredJob(app *herokunixv1.HerokuNixApp, b Desired, images JobImages) (*batchv1.Job, error) {
	req, err := json.Marshal(b.Request)
	if err != nil {
		return nil, fmt.Errorf("encoding build request: %w", err)
	}
	nixImage := images.Nix
	if app.Spec.Build.Image != "" {
		nixImage = app.Spec.Build.Image
	}
	jobLabels := map[string]string{LabelManagedBy: managedBy, LabelApp: app.Name, LabelBuildHash: b.SpecHash}

	buildArgs := []string{"build", "--workspace", workspaceDir, "--timeout", b.Timeout.String(), "--request", string(req)}
	volumes := []corev1.Volume{
		{Name: volWorkspace, VolumeSource: emptyDir(workspaceSizeLimit)},
		{Name: volTools, VolumeSource: emptyDir(toolsSizeLimit)},
		// The push container's root filesystem is read-only; compressed
		// layers wait here until they are uploaded.
		{Name: volTmp, VolumeSource: emptyDir(tmpSizeLimit)},
	}
	buildMounts := []corev1.VolumeMount{
		{Name: volWorkspace, MountPath: workspaceDir},
		{Name: volTools, MountPath: toolsDir, ReadOnly: true},
	}
	if ref := app.Spec.Build.NixConfigSecretRef; ref != nil {
		volumes = append(volumes, corev1.Volume{Name: volNixConf, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: ref.Name,
			Items:      []corev1.KeyToPath{{Key: ref.KeyOrDefault(), Path: "nix.conf"}},
		}}})
		buildMounts = append(buildMounts, corev1.VolumeMount{Name: volNixConf, MountPath: nixConfDir, ReadOnly: true})
		buildArgs = append(buildArgs, "--nix-conf", nixConfDir+"/nix.conf")
	}

	claim := CacheClaimName(app, nixImage)
	if claim != "" {
		volumes = append(volumes, corev1.Volume{Name: volCache, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
		}})
		buildMounts = append(buildMounts, corev1.VolumeMount{Name: volCache, MountPath: nixDir, SubPath: cacheSubPath})
		buildArgs = append(buildArgs, "--cache", nixDir)
	}

	resources := buildResources(app.Spec.Build.Resources)

	pushEnv := []corev1.EnvVar{{
		Name: "HEROKU_API_KEY",
		ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: app.Spec.CredentialsSecretRef.Name},
			Key:                  app.Spec.CredentialsSecretRef.KeyOrDefault(),
		}},
	}}
	pushArgs := []string{"push", "--workspace", workspaceDir, "--app", app.Spec.AppName,
		"--registry", images.RegistryHost, "--result", corev1.TerminationMessagePathDefault}
	if images.InsecureRegistry {
		pushArgs = append(pushArgs, "--insecure-registry")
	}
	if n := app.Spec.Build.MaxLayers; n != nil {
		pushArgs = append(pushArgs, "--max-layers", strconv.Itoa(int(*n)))
	}
	if len(b.ReuseFrom) > 0 {
		pushArgs = append(pushArgs, "--reuse-from", artifact.FormatReuseFrom(b.ReuseFrom))
	}

	nonRoot := &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](65532),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: b.Name, Namespace: app.Namespace, Labels: jobLabels},
		Spec: batchv1.JobSpec{
			// No TTL: CancelOthers keeps the FinishedJobsKept newest
			// finished Jobs, whatever the refresh interval, and owner
			// references take the rest with the resource.
			BackoffLimit:          ptr.To[int32](0),
			ActiveDeadlineSeconds: ptr.To(int64(b.Timeout.Seconds())),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: jobLabels},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					// Build pods run user code: they get no API access at all,
					// even when spec.build.serviceAccountName names an account.
					AutomountServiceAccountToken: ptr.To(false),
					ServiceAccountName:           app.Spec.Build.ServiceAccountName,
					NodeSelector:                 app.Spec.Build.NodeSelector,
					Tolerations:                  app.Spec.Build.Tolerations,
					Affinity:                     app.Spec.Build.Affinity,
					PriorityClassName:            app.Spec.Build.PriorityClassName,
					EnableServiceLinks:           ptr.To(false),
					SecurityContext:              &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Volumes:                      volumes,
					InitContainers: []corev1.Container{
						{
							Name:            containerTools,
							Image:           images.Tools,
							Args:            []string{"install", toolsDir + "/manager"},
							VolumeMounts:    []corev1.VolumeMount{{Name: volTools, MountPath: toolsDir}},
							SecurityContext: nonRoot,
						},
						{
							// Nix in a pod runs single-user as root with the
							// sandbox off (the sandbox needs privileges pods lack).
							Name:                     containerBuild,
							Image:                    nixImage,
							Command:                  []string{toolsDir + "/manager"},
							Args:                     buildArgs,
							VolumeMounts:             buildMounts,
							Resources:                resources,
							TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
							SecurityContext:          &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false)},
						},
					},
					Containers: []corev1.Container{{
						Name:  containerPush,
						Image: images.Tools,
						Args:  pushArgs,
						Env:   pushEnv,
						VolumeMounts: []corev1.VolumeMount{
							{Name: volWorkspace, MountPath: workspaceDir, ReadOnly: true},
							{Name: volTmp, MountPath: "/tmp"},
						},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU:              resource.MustParse("250m"),
							corev1.ResourceMemory:           resource.MustParse("256Mi"),
							corev1.ResourceEphemeralStorage: pushEphemeralStorage,
						}},
						SecurityContext: nonRoot,
					}},
				},
			},
		},
	}
	if claim != "" {
		// The cache step runs between tools (whose binary it runs) and build.
		pod := &job.Spec.Template.Spec
		pod.InitContainers = slices.Insert(pod.InitContainers, 1, cacheContainer(app, nixImage))
	}
	return job, nil
}
