// Package pipeline runs the two halves of a build, the same way in a build
// Job's containers (`manager build`, `manager push`) and in the controller's
// local builder: Build runs Nix and never needs the Heroku key; Push needs
// the key and never runs Nix.
package pipeline

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/image"
	"github.com/herokunix/herokunix/internal/nixbuild"
)

// Build resolves the flake and, unless it still locks to
// req.SkipIfRevision, builds every process output into workspace.
func Build(ctx context.Context, opts nixbuild.Options, req artifact.BuildRequest, workspace string) (*artifact.Manifest, error) {
	if err := os.MkdirAll(workspace, 0o755); err != nil {
		return nil, fmt.Errorf("making workspace: %w", err)
	}
	opts.Substituters = append(opts.Substituters, req.Substituters...)
	opts.TrustedPublicKeys = append(opts.TrustedPublicKeys, req.TrustedPublicKeys...)
	if req.SkipIfRevision != "" {
		locked, rev, err := nixbuild.Resolve(ctx, opts, req.Flake)
		if err != nil {
			return nil, err
		}
		if rev == req.SkipIfRevision {
			m := &artifact.Manifest{Revision: rev, LockedFlake: locked, Unchanged: true}
			return m, artifact.WriteManifest(workspace, m)
		}
	}
	nreq := nixbuild.Request{Flake: req.Flake, Processes: map[string]nixbuild.Process{}}
	for name, p := range req.Processes {
		nreq.Processes[name] = nixbuild.Process{Attribute: p.Attribute, Command: p.Command, Kind: artifact.Kind(p.Kind)}
	}
	m, err := nixbuild.Run(ctx, opts, nreq, workspace)
	if err != nil {
		return nil, err
	}
	if m.Revision == "" {
		// Sources without a rev (path:, tarballs) are identified by content.
		m.Revision = narHashRevision(m.LockedFlake)
		if err := artifact.WriteManifest(workspace, m); err != nil {
			return nil, err
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

// Push assembles and pushes the images of the build in workspace to
// <registryHost>/<app>/<process>.
func Push(ctx context.Context, workspace, registryHost, app string, opts image.PushOptions) (*artifact.Result, error) {
	m, err := artifact.ReadManifest(workspace)
	if err != nil {
		return nil, err
	}
	if m.Unchanged {
		return &artifact.Result{Revision: m.Revision, LockedFlake: m.LockedFlake, Unchanged: true}, nil
	}
	return image.PushWorkspace(ctx, workspace, registryHost, app, opts)
}
