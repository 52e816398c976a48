using NUnit.Framework;

// Assembly-wide: the kernel calibration cache of every model the tests build goes to a temporary folder, not ~/.cache.
[SetUpFixture]
public class KernelCacheSetUp
{
    private string? dir;

    [OneTimeSetUp]
    public void UseTemporaryCache()
    {
        dir = Path.Combine(Path.GetTempPath(), $"vlatune-test-cache-{Guid.NewGuid():N}");
        Environment.SetEnvironmentVariable("VLATUNE_CACHE_DIR", dir);
    }

    [OneTimeTearDown]
    public void RemoveCache()
    {
        if (dir is not null && Directory.Exists(dir)) Directory.Delete(dir, true);
    }
}
