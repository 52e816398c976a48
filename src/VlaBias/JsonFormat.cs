using System.Text.Encodings.Web;
using System.Text.Json;

namespace VlaBias;

/// <summary>How the project writes JSON people read: indented, and without escaping &lt;, &gt; or non-ASCII text.</summary>
public static class JsonFormat
{
    public static readonly JsonSerializerOptions Pretty = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
