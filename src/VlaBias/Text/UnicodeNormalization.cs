// Unicode normalization (NFC, NFD, NFKC, NFKD) for tokenizers. The projects build with InvariantGlobalization, under
// which .NET's string.Normalize returns its input unchanged ("e" + U+0301 stays two characters), so tokenizers whose
// normalizer is NFC (Qwen2) would split text differently from Hugging Face. This calls ICU's unorm2 directly (the
// libicuuc that .NET itself uses on Linux); where .NET's own normalization works it is used instead.
using System.Runtime.InteropServices;
using System.Text;

namespace VlaBias.Text;

public static class UnicodeNormalization
{
    private static readonly bool BuiltInWorks = Probe();

    private static bool Probe()
    {
        try { return "e\u0301".Normalize(NormalizationForm.FormC) == "\u00e9"; }
        catch (PlatformNotSupportedException) { return false; }
    }

    public static string Normalize(string text, NormalizationForm form)
    {
        if (text.All(c => c < 0x80)) return text;          // ASCII is its own normal form in all four
        if (BuiltInWorks) return text.Normalize(form);
        return Icu.Normalize(text, form) ?? throw new BadInputException(
            $"Unicode normalization ({form}) of non-ASCII text needs ICU (libicuuc), which was not found; install libicu (Debian: libicu72)");
    }

    private static unsafe class Icu
    {
        private delegate IntPtr GetInstance(out int error);
        private delegate int NormalizeFn(IntPtr normalizer, char* src, int length, char* dest, int capacity, out int error);

        private static readonly Lazy<(NormalizeFn normalize, Dictionary<NormalizationForm, IntPtr> instances)?> Api = new(Load);

        private static (NormalizeFn, Dictionary<NormalizationForm, IntPtr>)? Load()
        {
            foreach (var (lib, suffix) in Candidates())
            {
                if (!NativeLibrary.TryLoad(lib, out var handle)) continue;
                IntPtr Export(string name) => NativeLibrary.TryGetExport(handle, name + suffix, out var p) ? p : IntPtr.Zero;
                var normalize = Export("unorm2_normalize");
                if (normalize == IntPtr.Zero) continue;
                var instances = new Dictionary<NormalizationForm, IntPtr>();
                foreach (var (form, name) in new[] { (NormalizationForm.FormC, "unorm2_getNFCInstance"), (NormalizationForm.FormD, "unorm2_getNFDInstance"),
                             (NormalizationForm.FormKC, "unorm2_getNFKCInstance"), (NormalizationForm.FormKD, "unorm2_getNFKDInstance") })
                {
                    var get = Export(name);
                    if (get == IntPtr.Zero) break;
                    var instance = Marshal.GetDelegateForFunctionPointer<GetInstance>(get)(out var error);
                    if (error > 0 || instance == IntPtr.Zero) break;
                    instances[form] = instance;
                }
                if (instances.Count == 4) return (Marshal.GetDelegateForFunctionPointer<NormalizeFn>(normalize), instances);
            }
            return null;
        }

        // Debian and most distributions suffix ICU's symbols with its major version.
        private static IEnumerable<(string lib, string suffix)> Candidates()
        {
            for (int v = 90; v >= 50; v--) yield return ($"libicuuc.so.{v}", $"_{v}");
            yield return ("libicuuc.so", "");
        }

        public static string? Normalize(string text, NormalizationForm form)
        {
            if (Api.Value is not var (normalize, instances)) return null;
            int capacity = text.Length * 4 + 16;
            while (true)
            {
                var dest = new char[capacity];
                int length, error;
                fixed (char* s = text)
                fixed (char* d = dest)
                    length = normalize(instances[form], s, text.Length, d, capacity, out error);
                if (error == 15 /* U_BUFFER_OVERFLOW_ERROR */) { capacity = length + 16; continue; }
                if (error > 0) throw new InvalidOperationException($"ICU normalization failed (error {error})");
                return new string(dest, 0, length);
            }
        }
    }
}
