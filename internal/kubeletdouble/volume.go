package kubeletdouble

// Writing projected volumes: collectData after pkg/volume/projected/projected.go, the atomic
// writer after pkg/volume/util/atomic_writer.go and the fsGroup permissions after
// pkg/volume/volume_linux.go (v1.37.2).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/sets"
)

type fileProjection struct {
	Data []byte
	Mode int32
}

// servedVolume reports whether the double writes v: a projected volume with a podCertificate or
// clusterTrustBundle source.
func servedVolume(v *corev1.Volume) bool {
	if v.Projected == nil {
		return false
	}
	for _, s := range v.Projected.Sources {
		if s.PodCertificate != nil || s.ClusterTrustBundle != nil {
			return true
		}
	}
	return false
}

// collectData is the payload of the podCertificate and clusterTrustBundle sources of v. As in the
// kubelet, one failing source fails the whole volume (the kubelet then leaves it as it was and
// retries the mount).
func (k *Kubelet) collectData(pod *corev1.Pod, v *corev1.Volume) (map[string]fileProjection, error) {
	mode := collectDataMode(pod, v.Projected)
	var errs []error
	payload := map[string]fileProjection{}
	for i, source := range v.Projected.Sources {
		switch {
		case source.ClusterTrustBundle != nil:
			anchors, err := k.trustAnchors(source.ClusterTrustBundle)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			payload[source.ClusterTrustBundle.Path] = fileProjection{Data: anchors, Mode: mode}
		case source.PodCertificate != nil:
			key, chain, err := k.getPodCertificateCredentialBundle(projectionKey{
				Namespace: pod.Namespace, PodName: pod.Name, PodUID: string(pod.UID), VolumeName: v.Name, SourceIndex: i,
			})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			pc := source.PodCertificate
			if pc.CredentialBundlePath != "" {
				var bundle bytes.Buffer
				bundle.Write(key)
				bundle.Write(chain)
				payload[pc.CredentialBundlePath] = fileProjection{Data: bundle.Bytes(), Mode: mode}
			}
			if pc.KeyPath != "" {
				payload[pc.KeyPath] = fileProjection{Data: key, Mode: mode}
			}
			if pc.CertificateChainPath != "" {
				payload[pc.CertificateChainPath] = fileProjection{Data: chain, Mode: mode}
			}
		}
	}
	return payload, utilerrors.NewAggregate(errs)
}

// setUpVolume writes v of pod into its directory, as the projected plugin's SetUpAt does on a
// tmpfs emptyDir: directory 0777, atomic write, then with fsGroup the permissions of
// SetVolumeOwnership on the whole volume (chmod only: ownership is modelled by ProjectedFileAccess).
func (k *Kubelet) setUpVolume(pod *corev1.Pod, v *corev1.Volume) error {
	payload, err := k.collectData(pod, v)
	if err != nil {
		return err
	}
	dir := k.VolumeDir(pod.UID, v.Name)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	var setPerms func(string) error
	if fsGroupOf(pod) != nil {
		setPerms = func(string) error { return setVolumePermissions(dir) }
	}
	return atomicWrite(dir, payload, setPerms)
}

// setVolumePermissions is ChangePermissions for a read-only volume without the chgrp: every file
// gets mode|0440, every directory mode|0550|setgid; symlinks are left alone.
func setVolumePermissions(dir string) error {
	return filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode()&os.ModeSymlink != 0 {
			return nil
		}
		mask := roMask
		if info.IsDir() {
			mask |= os.ModeSetgid | execMask
		}
		return os.Chmod(p, info.Mode()|mask)
	})
}

const (
	dataDirName    = "..data"
	newDataDirName = "..data_tmp"
)

// atomicWrite is AtomicWriter.Write: payload goes into a new timestamped directory ..<timestamp>,
// the ..data symlink is swapped to it by renaming ..data_tmp over it, user-visible paths are
// symlinks name → ..data/name, and the old timestamped directory is removed. Nothing is written
// when the content is unchanged.
func atomicWrite(targetDir string, payload map[string]fileProjection, setPerms func(subPath string) error) error {
	clean := map[string]fileProjection{}
	for p, content := range payload {
		if err := validatePath(p); err != nil {
			return err
		}
		clean[filepath.Clean(p)] = content
	}

	dataDirPath := filepath.Join(targetDir, dataDirName)
	oldTsDir, err := os.Readlink(dataDirPath)
	if err != nil {
		if !os.IsNotExist(err) {
			return err
		}
		oldTsDir = ""
	}
	oldTsPath := filepath.Join(targetDir, oldTsDir)

	var toRemove sets.Set[string]
	shouldWrite := true
	if oldTsDir != "" {
		if toRemove, err = pathsToRemove(clean, oldTsPath); err != nil {
			return err
		}
		should, err := shouldWritePayload(clean, oldTsPath)
		if err != nil {
			return err
		}
		if !should && len(toRemove) == 0 {
			shouldWrite = false
			oldTsDir = ""
		}
	}

	if shouldWrite {
		tsDir, err := os.MkdirTemp(targetDir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
		if err != nil {
			return err
		}
		if err := os.Chmod(tsDir, 0o755); err != nil {
			return err
		}
		tsDirName := filepath.Base(tsDir)
		if err := writePayloadToDir(clean, tsDir); err != nil {
			return err
		}
		if setPerms != nil {
			if err := setPerms(tsDirName); err != nil {
				return err
			}
		}
		newDataDirPath := filepath.Join(targetDir, newDataDirName)
		if err := os.Symlink(tsDirName, newDataDirPath); err != nil {
			_ = os.RemoveAll(tsDir)
			return err
		}
		if err := os.Rename(newDataDirPath, dataDirPath); err != nil {
			_ = os.Remove(newDataDirPath)
			_ = os.RemoveAll(tsDir)
			return err
		}
	}

	if err := createUserVisibleFiles(targetDir, clean); err != nil {
		return err
	}
	var lastErr error
	for p := range toRemove {
		if strings.Contains(p, string(os.PathSeparator)) {
			continue // only the volume root holds user-visible symlinks
		}
		if err := os.Remove(filepath.Join(targetDir, p)); err != nil {
			lastErr = err
		}
	}
	if lastErr != nil {
		return lastErr
	}
	if oldTsDir != "" {
		return os.RemoveAll(oldTsPath)
	}
	return nil
}

// validatePath: relative, no ".." element, not starting with "..", names ≤255 and paths ≤4096 bytes.
func validatePath(p string) error {
	if p == "" {
		return fmt.Errorf("invalid path: must not be empty: %q", p)
	}
	if path.IsAbs(p) {
		return fmt.Errorf("invalid path: must be relative path: %s", p)
	}
	if len(p) > 4096 {
		return fmt.Errorf("invalid path: must be less than or equal to 4096 characters")
	}
	items := strings.Split(p, string(os.PathSeparator))
	for _, item := range items {
		if item == ".." {
			return fmt.Errorf("invalid path: must not contain '..': %s", p)
		}
		if len(item) > 255 {
			return fmt.Errorf("invalid path: filenames must be less than or equal to 255 characters")
		}
	}
	if strings.HasPrefix(items[0], "..") && len(items[0]) > 2 {
		return fmt.Errorf("invalid path: must not start with '..': %s", p)
	}
	return nil
}

func shouldWritePayload(payload map[string]fileProjection, oldTsDir string) (bool, error) {
	for p, fp := range payload {
		onDisk, err := os.ReadFile(filepath.Join(oldTsDir, p))
		if errors.Is(err, os.ErrNotExist) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if !bytes.Equal(fp.Data, onDisk) {
			return true, nil
		}
	}
	return false, nil
}

// pathsToRemove are the paths of the old timestamped directory no longer in the payload.
func pathsToRemove(payload map[string]fileProjection, oldTsDir string) (sets.Set[string], error) {
	paths := sets.New[string]()
	err := filepath.Walk(oldTsDir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, oldTsDir), string(os.PathSeparator))
		if rel != "" {
			paths.Insert(rel)
		}
		return nil
	})
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	newPaths := sets.New[string]()
	for file := range payload {
		for sub := file; sub != ""; {
			newPaths.Insert(sub)
			sub, _ = filepath.Split(sub)
			sub = strings.TrimSuffix(sub, string(os.PathSeparator))
		}
	}
	return paths.Difference(newPaths), nil
}

// writePayloadToDir writes each file with its mode, whatever the umask.
func writePayloadToDir(payload map[string]fileProjection, dir string) error {
	for p, fp := range payload {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), os.ModePerm); err != nil {
			return err
		}
		mode := os.FileMode(fp.Mode)
		if err := os.WriteFile(full, fp.Data, mode); err != nil {
			return err
		}
		if err := os.Chmod(full, mode); err != nil {
			return err
		}
	}
	return nil
}

// createUserVisibleFiles links the first element of every payload path: name → ..data/name.
func createUserVisibleFiles(targetDir string, payload map[string]fileProjection) error {
	for p := range payload {
		link, _, _ := strings.Cut(p, string(os.PathSeparator))
		visible := filepath.Join(targetDir, link)
		if _, err := os.Readlink(visible); err != nil && os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join(dataDirName, link), visible); err != nil {
				return err
			}
		}
	}
	return nil
}
