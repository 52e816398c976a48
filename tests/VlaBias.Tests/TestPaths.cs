namespace VlaBias.Tests;

/// <summary>Scratch folders for tests (under the system temp folder, removed by the caller's TearDown).</summary>
public static class TestPaths
{
    public static string NewTempDir(string prefix)
    {
        var d = Path.Combine(Path.GetTempPath(), $"vlatune-test-{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(d);
        return d;
    }

    public static readonly string[] Words =
        ["a", "man", "woman", "person", "in", "kitchen", "garage", "holding", "pan", "wrench", "yes", "no", "unknown", "is", "the",
         "friendly", "?", "describe", "image", ".", "user", "assistant", ":", "chef", "mechanic", "with", "red", "blue"];
}
