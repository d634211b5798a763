// k8s-validate: checks rendered Kubernetes manifests the way the API server of one named
// Kubernetes version would decode them, so `npm test` catches a manifest the cluster would refuse
// without a cluster. Each object is decoded strictly into its k8s.io/api type (an unknown or
// duplicate field, or a value of the wrong type, is an error, as with `kubectl apply
// --validate=strict`), then given the semantic checks that matter for what StrataNodes renders,
// using apimachinery's own validators for names, labels, quantities and keys.
//
// Usage: k8s-validate PATH... (files or directories of .yaml/.yml, multi-document allowed).
// Output: a first line naming the Kubernetes version, then "ok FILE KIND/NAME" or
// "error FILE KIND/NAME: FIELD: MESSAGE" per object. Exit 0 all valid, 1 any error, 2 usage/IO.
package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The Kubernetes minor version whose API types (k8s.io/api v0.X.Y = Kubernetes 1.X.Y) decode here.
func kubernetesVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == "k8s.io/api" {
				return "kubernetes v1." + strings.TrimPrefix(d.Version, "v0.") + " (k8s.io/api " + d.Version + ")"
			}
		}
	}
	return "kubernetes (unknown k8s.io/api version)"
}

type problem struct{ field, message string }

type checker struct{ problems []problem }

func (c *checker) add(field, format string, args ...any) {
	c.problems = append(c.problems, problem{field, fmt.Sprintf(format, args...)})
}

func (c *checker) errs(field string, messages []string) {
	for _, m := range messages {
		c.add(field, "%s", m)
	}
}

func (c *checker) meta(m metav1.ObjectMeta, namespaced bool) {
	if m.Name == "" {
		c.add("metadata.name", "required")
	} else {
		c.errs("metadata.name", validation.IsDNS1123Subdomain(m.Name))
	}
	if namespaced && m.Namespace != "" {
		c.errs("metadata.namespace", validation.IsDNS1123Label(m.Namespace))
	}
	c.labels("metadata.labels", m.Labels)
	for k := range m.Annotations {
		c.errs("metadata.annotations["+k+"]", validation.IsQualifiedName(k))
	}
}

func (c *checker) labels(field string, labels map[string]string) {
	for k, v := range labels {
		c.errs(field+"["+k+"]", validation.IsQualifiedName(k))
		c.errs(field+"["+k+"]", validation.IsValidLabelValue(v))
	}
}

func (c *checker) probe(field string, p *corev1.Probe) {
	if p == nil {
		return
	}
	handlers := 0
	if p.Exec != nil {
		handlers++
	}
	if p.HTTPGet != nil {
		handlers++
	}
	if p.TCPSocket != nil {
		handlers++
	}
	if p.GRPC != nil {
		handlers++
	}
	if handlers != 1 {
		c.add(field, "must have exactly one handler, has %d", handlers)
	}
}

func (c *checker) podSpec(field string, spec corev1.PodSpec, ports map[string]bool) {
	volumes := map[string]bool{}
	for i, v := range spec.Volumes {
		f := fmt.Sprintf("%s.volumes[%d]", field, i)
		c.errs(f+".name", validation.IsDNS1123Label(v.Name))
		if volumes[v.Name] {
			c.add(f+".name", "duplicate volume %q", v.Name)
		}
		volumes[v.Name] = true
		if v.HostPath != nil && !strings.HasPrefix(v.HostPath.Path, "/") {
			c.add(f+".hostPath.path", "must be an absolute path, got %q", v.HostPath.Path)
		}
	}
	if len(spec.Containers) == 0 {
		c.add(field+".containers", "at least one container is required")
	}
	names := map[string]bool{}
	for i, ct := range spec.Containers {
		f := fmt.Sprintf("%s.containers[%d]", field, i)
		c.errs(f+".name", validation.IsDNS1123Label(ct.Name))
		if names[ct.Name] {
			c.add(f+".name", "duplicate container name %q", ct.Name)
		}
		names[ct.Name] = true
		if ct.Image == "" {
			c.add(f+".image", "required")
		}
		portNames := map[string]bool{}
		for j, p := range ct.Ports {
			pf := fmt.Sprintf("%s.ports[%d]", f, j)
			c.errs(pf+".containerPort", validation.IsValidPortNum(int(p.ContainerPort)))
			if p.Name != "" {
				c.errs(pf+".name", validation.IsValidPortName(p.Name))
				if portNames[p.Name] {
					c.add(pf+".name", "duplicate port name %q", p.Name)
				}
				portNames[p.Name] = true
				ports[p.Name] = true
			}
			if spec.HostNetwork && p.HostPort != 0 && p.HostPort != p.ContainerPort {
				c.add(pf+".hostPort", "must equal containerPort with hostNetwork")
			}
		}
		for name, req := range ct.Resources.Requests {
			if lim, ok := ct.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
				c.add(fmt.Sprintf("%s.resources.requests[%s]", f, name), "must be less than or equal to the limit %s, got %s", lim.String(), req.String())
			}
			if strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix) {
				if lim, ok := ct.Resources.Limits[name]; !ok || req.Cmp(lim) != 0 {
					c.add(fmt.Sprintf("%s.resources.requests[%s]", f, name), "huge pages need a limit equal to the request")
				}
			}
		}
		for j, m := range ct.VolumeMounts {
			mf := fmt.Sprintf("%s.volumeMounts[%d]", f, j)
			if !volumes[m.Name] {
				c.add(mf+".name", "volume %q is not declared in the pod's volumes", m.Name)
			}
			if !strings.HasPrefix(m.MountPath, "/") {
				c.add(mf+".mountPath", "must be absolute, got %q", m.MountPath)
			}
		}
		for j, e := range ct.Env {
			c.errs(fmt.Sprintf("%s.env[%d].name", f, j), validation.IsEnvVarName(e.Name))
		}
		c.probe(f+".livenessProbe", ct.LivenessProbe)
		c.probe(f+".readinessProbe", ct.ReadinessProbe)
		c.probe(f+".startupProbe", ct.StartupProbe)
		for _, p := range []*corev1.Probe{ct.LivenessProbe, ct.ReadinessProbe, ct.StartupProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.Type == 1 && !portNames[p.HTTPGet.Port.StrVal] {
				c.add(f+".probe.httpGet.port", "names port %q, which the container does not declare", p.HTTPGet.Port.StrVal)
			}
		}
	}
	c.labels(field+".nodeSelector", spec.NodeSelector)
	if spec.DNSPolicy != "" && spec.DNSPolicy != corev1.DNSClusterFirst && spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet &&
		spec.DNSPolicy != corev1.DNSDefault && spec.DNSPolicy != corev1.DNSNone {
		c.add(field+".dnsPolicy", "unsupported value %q", spec.DNSPolicy)
	}
	for i, t := range spec.Tolerations {
		if t.Operator == corev1.TolerationOpExists && t.Value != "" {
			c.add(fmt.Sprintf("%s.tolerations[%d].value", field, i), "must be empty when operator is Exists")
		}
	}
}

// validate decodes one document strictly into its type and checks it; kind/name for the report.
func validate(doc []byte) (string, []problem) {
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return "?", []problem{{"", err.Error()}}
	}
	id := head.Kind + "/" + head.Metadata.Name
	c := &checker{}
	strict := func(into any) bool {
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			c.add("", "%s", err.Error())
			return false
		}
		return true
	}
	switch head.APIVersion + " " + head.Kind {
	case "apps/v1 DaemonSet":
		var d appsv1.DaemonSet
		if !strict(&d) {
			break
		}
		c.meta(d.ObjectMeta, true)
		if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels)+len(d.Spec.Selector.MatchExpressions) == 0 {
			c.add("spec.selector", "required")
		} else if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil {
			c.add("spec.selector", "%s", err.Error())
		} else if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			c.add("spec.template.metadata.labels", "`selector` does not match template `labels`")
		}
		c.labels("spec.template.metadata.labels", d.Spec.Template.Labels)
		switch d.Spec.UpdateStrategy.Type {
		case "", appsv1.RollingUpdateDaemonSetStrategyType, appsv1.OnDeleteDaemonSetStrategyType:
		default:
			c.add("spec.updateStrategy.type", "unsupported value %q", d.Spec.UpdateStrategy.Type)
		}
		c.podSpec("spec.template.spec", d.Spec.Template.Spec, map[string]bool{})
	case "v1 Secret":
		var s corev1.Secret
		if !strict(&s) {
			break
		}
		c.meta(s.ObjectMeta, true)
		for k := range s.Data {
			c.errs("data["+k+"]", validation.IsConfigMapKey(k))
		}
		for k := range s.StringData {
			c.errs("stringData["+k+"]", validation.IsConfigMapKey(k))
		}
		switch s.Type {
		case "", corev1.SecretTypeOpaque, corev1.SecretTypeServiceAccountToken, corev1.SecretTypeDockercfg, corev1.SecretTypeDockerConfigJson,
			corev1.SecretTypeBasicAuth, corev1.SecretTypeSSHAuth, corev1.SecretTypeTLS, corev1.SecretTypeBootstrapToken:
		default:
			if len(validation.IsQualifiedName(string(s.Type))) > 0 {
				c.add("type", "invalid secret type %q", s.Type)
			}
		}
	case "v1 Service":
		var s corev1.Service
		if !strict(&s) {
			break
		}
		c.meta(s.ObjectMeta, true)
		c.errs("metadata.name", validation.IsDNS1035Label(s.Name))
		names := map[string]bool{}
		for i, p := range s.Spec.Ports {
			f := fmt.Sprintf("spec.ports[%d]", i)
			c.errs(f+".port", validation.IsValidPortNum(int(p.Port)))
			if len(s.Spec.Ports) > 1 && p.Name == "" {
				c.add(f+".name", "required when the service has more than one port")
			}
			if names[p.Name] {
				c.add(f+".name", "duplicate %q", p.Name)
			}
			names[p.Name] = true
		}
		if s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone && len(validation.IsValidIP(nil, s.Spec.ClusterIP)) > 0 {
			c.add("spec.clusterIP", "must be None or an IP address, got %q", s.Spec.ClusterIP)
		}
		c.labels("spec.selector", s.Spec.Selector)
	case "v1 Namespace":
		var n corev1.Namespace
		if !strict(&n) {
			break
		}
		c.meta(n.ObjectMeta, false)
		c.errs("metadata.name", validation.IsDNS1123Label(n.Name))
	case "v1 ConfigMap":
		var m corev1.ConfigMap
		if !strict(&m) {
			break
		}
		c.meta(m.ObjectMeta, true)
		for k := range m.Data {
			c.errs("data["+k+"]", validation.IsConfigMapKey(k))
		}
	case "v1 ServiceAccount":
		var a corev1.ServiceAccount
		if !strict(&a) {
			break
		}
		c.meta(a.ObjectMeta, true)
	default:
		c.add("kind", "unknown or unsupported kind %q in apiVersion %q", head.Kind, head.APIVersion)
	}
	return id, c.problems
}

// quantities are checked by decoding (resource.Quantity refuses malformed text); kept referenced
// so the import states where that rule lives.
var _ = resource.MustParse

func files(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: k8s-validate PATH...")
		os.Exit(2)
	}
	fmt.Println(kubernetesVersion())
	list, err := files(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-validate:", err)
		os.Exit(2)
	}
	if len(list) == 0 {
		fmt.Fprintln(os.Stderr, "k8s-validate: no .yaml files under", strings.Join(os.Args[1:], " "))
		os.Exit(2)
	}
	failed := false
	for _, file := range list {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, "k8s-validate:", err)
			os.Exit(2)
		}
		reader := utilyaml.NewYAMLReader(bufioReader(data))
		for {
			doc, err := reader.Read()
			if err != nil {
				break
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			id, problems := validate(doc)
			if len(problems) == 0 {
				fmt.Printf("ok %s %s\n", file, id)
				continue
			}
			failed = true
			for _, p := range problems {
				field := p.field
				if field == "" {
					field = "(decode)"
				}
				fmt.Printf("error %s %s: %s: %s\n", file, id, field, p.message)
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}
