package nixbuild

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/herokunix/herokunix/internal/artifact"
)

// flakeMetadata is the part of `nix flake metadata --json` we use.
type flakeMetadata struct {
	// URL is the locked flake ref in Nix 2.8 and later.
	URL string `json:"url"`
	// LockedURL is what newer Nix also prints for the locked ref.
	LockedURL string `json:"lockedUrl"`
	Locked    struct {
		Rev string `json:"rev"`
	} `json:"locked"`
}

// Resolve locks flakeRef with `nix flake metadata --json` and returns the
// locked ref (to build from) and, for version-controlled sources, the revision.
func Resolve(ctx context.Context, n Nix, flakeRef string) (lockedURL, rev string, err error) {
	if err := ValidateFlakeRef(flakeRef); err != nil {
		return "", "", err
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	return n.resolve(ctx, flakeRef)
}

func (o Nix) resolve(ctx context.Context, flakeRef string) (string, string, error) {
	out, err := o.nix(ctx, "nix flake metadata", "flake", "metadata", "--json", flakeRef)
	if err != nil {
		return "", "", err
	}
	var md flakeMetadata
	if err := json.Unmarshal(out, &md); err != nil {
		return "", "", fmt.Errorf("parsing nix flake metadata output: %w", err)
	}
	locked := md.LockedURL
	if locked == "" {
		locked = md.URL
	}
	if err := ValidateFlakeRef(locked); err != nil {
		return "", "", fmt.Errorf("nix flake metadata returned an unusable locked ref: %w", err)
	}
	return locked, md.Locked.Rev, nil
}

// Run resolves req.Flake and, unless it still locks to req.SkipIfRevision
// (then it writes a manifest saying Unchanged and builds nothing), builds
// every process's attribute from the locked ref, exports each output into
// workspace (created if missing) in the form its kind needs, and writes the
// manifest there. req's substituters and keys are used besides n's.
//
// The manifest's revision is the flake's rev, or for sources without one
// (path:, tarballs) the hex form of the locked ref's narHash.
//
// Request validation errors come back before Nix runs. A Nix failure is a
// *NixError; a timeout or cancellation wraps the context's error.
func Run(ctx context.Context, n Nix, req artifact.BuildRequest, workspace string) (*artifact.Manifest, error) {
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	ws, err := filepath.Abs(workspace)
	if err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	if err := os.MkdirAll(ws, 0o755); err != nil {
		return nil, fmt.Errorf("creating workspace: %w", err)
	}
	n.Substituters = append(slices.Clone(n.Substituters), req.Substituters...)
	n.TrustedPublicKeys = append(slices.Clone(n.TrustedPublicKeys), req.TrustedPublicKeys...)
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()

	locked, rev, err := n.resolve(ctx, req.Flake)
	if err != nil {
		return nil, err
	}
	if rev == "" {
		// Sources without a rev (path:, tarballs) are identified by content.
		// This comes before the comparison with SkipIfRevision, which is a
		// revision this function reported before: a narHash is compared with
		// a narHash, or a moving tarball would be rebuilt every interval.
		rev = narHashRevision(locked)
	}
	if req.SkipIfRevision != "" && rev == req.SkipIfRevision {
		m := &artifact.Manifest{Revision: rev, LockedFlake: locked, Unchanged: true}
		return m, artifact.WriteManifest(ws, m)
	}
	m := &artifact.Manifest{
		Revision:    rev,
		LockedFlake: locked,
		Processes:   make(map[string]artifact.ProcessOutput, len(req.Processes)),
	}
	// Build each distinct attribute once, in a stable order.
	built := map[string]string{}
	var roots []string
	for _, name := range slices.Sorted(maps.Keys(req.Processes)) {
		p := req.Processes[name]
		out, ok := built[p.Attribute]
		if !ok {
			var drv string
			out, drv, err = n.build(ctx, locked, p.Attribute)
			if err != nil {
				return nil, fmt.Errorf("process %q: %w", name, err)
			}
			built[p.Attribute] = out
			roots = append(roots, out)
			if artifact.IsStorePath(drv) {
				roots = append(roots, drv)
			}
		}
		po, err := n.export(ctx, ws, name, p, out)
		if err != nil {
			return nil, fmt.Errorf("process %q (%s): %w", name, out, err)
		}
		m.Processes[name] = *po
	}
	if err := artifact.WriteManifest(ws, m); err != nil {
		return nil, err
	}
	if n.GCRootsDir != "" {
		if err := writeRoots(n.GCRootsDir, roots); err != nil {
			return nil, fmt.Errorf("recording the build's GC roots: %w", err)
		}
	}
	return m, nil
}

// narHashRevision is the hex form of a locked ref's narHash
// (sha256-<base64>), or "" when it has none.
func narHashRevision(locked string) string {
	_, query, _ := strings.Cut(locked, "?")
	v, err := url.ParseQuery(query)
	if err != nil {
		return ""
	}
	sri, ok := strings.CutPrefix(v.Get("narHash"), "sha256-")
	if !ok {
		return ""
	}
	sum, err := base64.StdEncoding.DecodeString(sri)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(sum)
}

func validateRequest(req artifact.BuildRequest) error {
	if err := ValidateFlakeRef(req.Flake); err != nil {
		return err
	}
	if len(req.Processes) == 0 {
		return errors.New("no processes to build")
	}
	for name, p := range req.Processes {
		if err := artifact.ValidateProcessType(name); err != nil {
			return err
		}
		if err := ValidateAttribute(p.Attribute); err != nil {
			return fmt.Errorf("process %q: %w", name, err)
		}
		switch p.Kind {
		case "", artifact.KindDockerArchive, artifact.KindNix2Container, artifact.KindClosure:
		default:
			return fmt.Errorf("process %q: unknown kind %q", name, p.Kind)
		}
	}
	return nil
}

// buildResult is one entry of `nix build --json`.
type buildResult struct {
	DrvPath string            `json:"drvPath"`
	Outputs map[string]string `json:"outputs"`
}

// build builds locked#attr and returns its output path ("out", or the only
// output if it has another name) and its derivation.
func (o Nix) build(ctx context.Context, locked, attr string) (string, string, error) {
	installable := locked + "#" + attr
	out, err := o.nix(ctx, "nix build "+installable,
		"build", "--json", "--no-link", "--print-build-logs", installable)
	if err != nil {
		return "", "", err
	}
	var results []buildResult
	if err := json.Unmarshal(out, &results); err != nil {
		return "", "", fmt.Errorf("parsing nix build output: %w", err)
	}
	if len(results) != 1 {
		return "", "", fmt.Errorf("nix build printed %d results for one attribute", len(results))
	}
	outs := results[0].Outputs
	path, ok := outs["out"]
	if !ok {
		if len(outs) != 1 {
			return "", "", fmt.Errorf("%s has %d outputs and none is called out", attr, len(outs))
		}
		for _, p := range outs {
			path = p
		}
	}
	if !artifact.IsStorePath(path) {
		return "", "", fmt.Errorf("nix build returned %q, which is not a store path", path)
	}
	return path, results[0].DrvPath, nil
}
