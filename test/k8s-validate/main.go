// Command k8s-validate checks rendered Kubernetes YAML manifests against the
// API of one pinned Kubernetes version without needing a cluster.
//
// It does what a kube-apiserver would do to a create request for the kinds
// Strata renders: refuse kinds the version does not serve, decode strictly
// (unknown, duplicate and mistyped fields are errors, as with
// `kubectl apply --validate=strict`), then run the apiserver's semantic
// checks (see checks.go).
//
// Usage: k8s-validate DIR_OR_FILE...
//
// Output is a version line, then "ok <file> <kind>/<name>" per valid object
// or "error <file> <kind>/<name>: <field path>: <message>" per problem. Exit
// status is 0 when everything is valid, 1 when any object is invalid and 2
// on usage or I/O errors.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// The Kubernetes version validated against. k8s.io/api v0.X.Y is cut from
// Kubernetes v1.X.Y, so these must move together with go.mod; run refuses
// to start if the linked k8s.io/api differs, so the printed version is true.
const (
	kubernetesVersion = "v1.37"
	kubernetesMinor   = 37
	k8sAPIVersion     = "v0.37.2"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, "usage: k8s-validate DIR_OR_FILE...")
		return 2
	}
	if err := checkLinkedAPIVersion(); err != nil {
		fmt.Fprintln(stderr, "k8s-validate:", err)
		return 2
	}
	fmt.Fprintf(stdout, "kubernetes %s (k8s.io/api %s)\n", kubernetesVersion, k8sAPIVersion)

	files, err := collectFiles(args)
	if err != nil {
		fmt.Fprintln(stderr, "k8s-validate:", err)
		return 2
	}
	if len(files) == 0 {
		// An empty run is almost always a wrong path in a test script;
		// passing it silently would hide that.
		fmt.Fprintln(stderr, "k8s-validate: no .yaml/.yml files found")
		return 2
	}

	v := newValidator()
	invalid := false
	for _, f := range files {
		results, err := v.validateFile(f)
		if err != nil {
			fmt.Fprintln(stderr, "k8s-validate:", err)
			return 2
		}
		for _, r := range results {
			if len(r.errs) == 0 {
				fmt.Fprintf(stdout, "ok %s %s/%s\n", f, r.kind, r.name)
				continue
			}
			invalid = true
			for _, e := range r.errs {
				fmt.Fprintf(stdout, "error %s %s/%s: %s\n", f, r.kind, r.name, oneLine(e))
			}
		}
	}
	if invalid {
		return 1
	}
	return 0
}

// checkLinkedAPIVersion makes sure the constants above describe the
// k8s.io/api actually compiled in. Build info is missing only in unusual
// builds, where the constants are trusted.
func checkLinkedAPIVersion() error {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	for _, dep := range bi.Deps {
		if dep.Path == "k8s.io/api" && dep.Version != k8sAPIVersion {
			return fmt.Errorf("linked k8s.io/api %s but the constants in main.go say %s; update them together", dep.Version, k8sAPIVersion)
		}
	}
	return nil
}

// collectFiles expands the arguments into a sorted list of files, so output
// order is stable across runs and machines.
func collectFiles(args []string) ([]string, error) {
	var files []string
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			// A file named explicitly is validated whatever its extension:
			// the caller asked for it.
			files = append(files, arg)
			continue
		}
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && isYAML(path) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(files)
	return files, nil
}

func isYAML(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}

// result is the verdict on one object: one YAML document, or one item of a
// List.
type result struct {
	kind, name string
	errs       []string
}

type validator struct {
	// This is the serializer the apiserver uses for fieldValidation=Strict.
	// It reports unknown and duplicate fields as a strict-decoding error
	// while still returning the decoded object, so those and the semantic
	// problems can be reported in one pass.
	decoder runtime.Decoder
}

func newValidator() *validator {
	s := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
	return &validator{decoder: s}
}

func (v *validator) validateFile(path string) ([]result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	var results []result
	// YAMLReader splits documents on "---" lines the same way kubectl does.
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		results = append(results, v.validateDocument(doc)...)
	}
	return results, nil
}

// header is read leniently so that a document that fails strict decoding
// can still be named in the output.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

func (v *validator) validateDocument(doc []byte) []result {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return []result{{kind: "<unknown>", name: "<unknown>", errs: []string{"<document>: invalid YAML: " + err.Error()}}}
	}
	if t := bytes.TrimSpace(j); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil // empty document: a trailing "---", or only comments
	}

	var h header
	_ = yaml.Unmarshal(j, &h) // best effort; strict decoding below reports the details
	res := result{kind: orUnknown(h.Kind), name: orUnknown(h.Metadata.Name)}
	if h.APIVersion == "" || h.Kind == "" {
		res.errs = append(res.errs, "<document>: apiVersion and kind are required")
		return []result{res}
	}

	obj, gvk, err := v.decoder.Decode(doc, nil, nil)
	strictErr, isStrict := runtime.AsStrictDecodingError(err)
	switch {
	case err == nil:
	case runtime.IsNotRegisteredError(err):
		// A typo in kind/apiVersion, a custom resource (which cannot be
		// checked without its CRD), or a group this version does not have.
		res.errs = append(res.errs, fmt.Sprintf("kind: unknown kind %q in apiVersion %q (not in the Kubernetes %s API)", h.Kind, h.APIVersion, kubernetesVersion))
		return []result{res}
	case isStrict:
		// Unknown or duplicate fields. obj is otherwise fully decoded, so
		// carry on and report semantic problems too.
		for _, se := range strictErr.Errors() {
			res.errs = append(res.errs, describeStrictError(se))
		}
	default:
		// Wrong types and malformed values (quantities, base64, ...): there
		// is no usable object to check further.
		res.errs = append(res.errs, describeDecodeError(err))
		return []result{res}
	}

	if list, ok := obj.(*corev1.List); ok {
		return v.validateList(list, res)
	}

	res.errs = append(res.errs, removedAPIErrors(obj, *gvk)...)
	for _, e := range validateObject(obj) {
		res.errs = append(res.errs, e.Error())
	}
	return []result{res}
}

// validateList checks each item of a v1 List (what `kubectl get -o yaml`
// and some renderers emit) as if it were its own document.
func (v *validator) validateList(list *corev1.List, self result) []result {
	var out []result
	if len(self.errs) > 0 {
		out = append(out, self)
	}
	for i, item := range list.Items {
		// Items are JSON, which is YAML, so the same strict path applies.
		for _, r := range v.validateDocument(item.Raw) {
			if r.name == "<unknown>" {
				r.name = fmt.Sprintf("<items[%d]>", i)
			}
			out = append(out, r)
		}
	}
	return out
}

// lifecycle is implemented by the k8s.io/api types of pre-release
// (alpha/beta) API versions and records the release that removed them.
type lifecycle interface {
	APILifecycleRemoved() (major, minor int)
}

// removedAPIErrors rejects objects whose group/version still has Go types in
// k8s.io/api (kept for old clients) but is no longer served by the target
// version, e.g. apps/v1beta2 DaemonSet, removed in 1.16.
func removedAPIErrors(obj runtime.Object, gvk schema.GroupVersionKind) []string {
	l, ok := obj.(lifecycle)
	if !ok {
		return nil
	}
	major, minor := l.APILifecycleRemoved()
	if major != 1 || minor > kubernetesMinor {
		return nil
	}
	return []string{fmt.Sprintf("apiVersion: %s %s was removed in Kubernetes v%d.%d and is not served by %s",
		gvk.GroupVersion(), gvk.Kind, major, minor, kubernetesVersion)}
}

var quotedField = regexp.MustCompile(`^(unknown|duplicate) field "([^"]*)"`)

// describeStrictError puts the offending field path first, per the
// "<field path>: <message>" output format.
func describeStrictError(err error) string {
	msg := err.Error()
	if m := quotedField.FindStringSubmatch(msg); m != nil {
		return m[2] + ": " + msg
	}
	// Duplicate keys found by the YAML pass come with a line number rather
	// than a field path.
	return "<document>: " + msg
}

// typeErrorField matches encoding/json type errors such as
// `cannot unmarshal string into Go struct field PodSpec.spec.hostNetwork of type bool`.
var typeErrorField = regexp.MustCompile(`Go struct field [A-Za-z0-9_]+\.([^ ]+) of type`)

func describeDecodeError(err error) string {
	msg := err.Error()
	if m := typeErrorField.FindStringSubmatch(msg); m != nil {
		return m[1] + ": " + msg
	}
	return "<document>: " + msg
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

// oneLine keeps each problem on one output line; some YAML errors span
// several.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
