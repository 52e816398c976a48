using System.Text;

namespace VlaBias.Weights;

/// <summary>
/// Renders untrusted names (tensor names, dtype strings, file names from an index) for one-line error messages:
/// quoted, control characters escaped, very long names shortened.
/// </summary>
internal static class ErrorText
{
    private const int MaxChars = 200;

    public static string Quote(string text)
    {
        var sb = new StringBuilder(Math.Min(text.Length, MaxChars) + 8);
        sb.Append('\'');
        foreach (char c in text.Length > MaxChars ? text[..MaxChars] : text)
        {
            if (char.IsControl(c) || c == '\u2028' || c == '\u2029') sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        if (text.Length > MaxChars) sb.Append($"…({text.Length} chars)");
        sb.Append('\'');
        return sb.ToString();
    }

    public static string Shape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}
