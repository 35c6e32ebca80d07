using System.Reflection;
using System.Text;
using System.Text.Json;
using SpeedLimit.Checkpoints;
using SpeedLimit.Data;
using SpeedLimit.Model;
using SpeedLimit.Search;

namespace SpeedLimit.Pipeline;

/// <summary>A published file: its content hash and size (the bytes are in the store's blobs table or a shared folder).</summary>
public sealed record PublishedFile(string Sha256, long SizeBytes);

/// <summary>
/// What a worker needs to evaluate a study's candidates exactly as the coordinator would: the
/// tokenized task (so workers need neither the data files nor the vocabulary, and every worker
/// scores the same token ids), the supermodel's weights, the fine-tuning budget, the precision and
/// the training threads, plus the program version that made it.
/// </summary>
public sealed record CandidatePackage(int Format, string ProgramVersion, string Task, Precision Precision, FineTuneOptions FineTune,
    int TrainThreads, PublishedFile EncodedTask, PublishedFile Supermodel)
{
    public const int CurrentFormat = 1;

    /// <summary>This build's version (informational version, with the source revision when the build knows it).</summary>
    public static string ThisProgramVersion { get; } =
        typeof(CandidatePackage).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(CandidatePackage).Assembly.GetName().Version?.ToString() ?? "unknown";

    public string ToJson() => JsonSerializer.Serialize(this, SearchJson.Compact);

    public static CandidatePackage FromJson(string json)
    {
        try
        {
            return JsonSerializer.Deserialize<CandidatePackage>(json, SearchJson.Compact) ?? throw new InvalidDataException("the published package is empty");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"the study's published package is not one this speedlimit reads ({ex.Message}); run the coordinator's version of speedlimit on this worker", ex);
        }
    }

    /// <summary>
    /// Writes the tokenized task and the supermodel's weights (weights only, no optimizer state) into
    /// <paramref name="work"/>, publishes both (into the store, or <paramref name="publishFolder"/>)
    /// and returns the package describing them.
    /// </summary>
    public static CandidatePackage Publish(StudyStore store, ElasticSupermodel supermodel, EncodedTask task, FineTuneOptions fineTune,
        Precision precision, int trainThreads, string work, string? publishFolder)
    {
        ArgumentNullException.ThrowIfNull(store);
        Directory.CreateDirectory(work);
        var taskFile = Path.Combine(work, "published-task.bin");
        var weightsFile = Path.Combine(work, "published-supermodel.safetensors");
        WriteTask(task, taskFile);
        var tmp = weightsFile + ".tmp";
        BertCheckpoint.Save(tmp, supermodel.Config, supermodel.Supermodel.Parameters);
        File.Move(tmp, weightsFile, overwrite: true);
        var taskSha = store.PutBlob(taskFile, publishFolder);
        var weightsSha = store.PutBlob(weightsFile, publishFolder);
        return new CandidatePackage(CurrentFormat, ThisProgramVersion, task.Task.Name, precision, fineTune, trainThreads,
            new PublishedFile(taskSha, new FileInfo(taskFile).Length), new PublishedFile(weightsSha, new FileInfo(weightsFile).Length));
    }

    /// <summary>
    /// A worker's evaluator for a published package: checks the version and settings, fetches the
    /// files into <paramref name="cacheFolder"/> (verified by SHA-256) and loads them.
    /// </summary>
    public static CandidateEvaluator OpenEvaluator(StudyStore store, string specJson, string cacheFolder, int? threads = null)
    {
        var package = FromJson(specJson);
        if (package.Format != CurrentFormat)
            throw new InvalidDataException($"the study's package has format {package.Format}, this worker reads format {CurrentFormat}; run the coordinator's version of speedlimit ({package.ProgramVersion}) on this worker");
        if (package.ProgramVersion != ThisProgramVersion)
            throw new UserInputException($"the coordinator runs speedlimit {package.ProgramVersion}, this worker {ThisProgramVersion}; run the same build on every machine (results must not depend on which machine evaluated a candidate)");
        if (threads is int t && t != package.TrainThreads)
            throw new UserInputException($"the study fine-tunes with {package.TrainThreads} training thread(s) (thread partitioning can change float summation order, so results would depend on the worker); start this worker with --threads {package.TrainThreads}, or the coordinator with --threads {t}");
        Directory.CreateDirectory(cacheFolder);
        var taskFile = Fetch(store, package.EncodedTask, cacheFolder, ".task.bin");
        var weightsFile = Fetch(store, package.Supermodel, cacheFolder, ".safetensors");
        var task = ReadTask(taskFile);
        BertCheckpointData data;
        try { data = BertCheckpoint.Load(weightsFile); }
        catch (Exception ex) when (ex is InvalidDataException or IOException)
        {
            throw new InvalidDataException($"this worker cannot read the published supermodel ({ex.Message}); restart the coordinator so it publishes it again", ex);
        }
        var model = new BertModel(data.Config, data.Parameters) { Threads = package.TrainThreads };
        return new CandidateEvaluator(new ElasticSupermodel(model), task, package.FineTune, package.Precision, package.TrainThreads);
    }

    private static string Fetch(StudyStore store, PublishedFile file, string cacheFolder, string suffix)
    {
        var path = Path.Combine(cacheFolder, file.Sha256 + suffix);
        if (File.Exists(path) && new FileInfo(path).Length == file.SizeBytes
            && Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path))) == file.Sha256)
            return path;
        store.GetBlob(file.Sha256, path);
        return path;
    }

    // ---- the tokenized task: a small binary file ------------------------------------------

    private const string TaskMagic = "SLTASK01";

    internal static void WriteTask(EncodedTask task, string path)
    {
        var tmp = path + ".tmp";
        using (var w = new BinaryWriter(File.Create(tmp), new UTF8Encoding(false)))
        {
            w.Write(TaskMagic);
            var t = task.Task;
            w.Write(t.Name);
            w.Write((int)t.Kind);
            w.Write((int)t.PrimaryMetric);
            w.Write(t.LabelNames.Count);
            foreach (var l in t.LabelNames) w.Write(l);
            var e = task.Encoder;
            foreach (var id in new[] { e.VocabSize, e.PadId, e.ClsId, e.SepId, e.MaskId, e.UnkId }) w.Write(id);
            w.Write(task.MaxLength);
            foreach (var split in new[] { task.Train, task.Dev })
            {
                w.Write(split.Count);
                foreach (var x in split)
                {
                    w.Write(x.InputIds.Length);
                    foreach (var id in x.InputIds) w.Write(id);
                    foreach (var id in x.TokenTypeIds) w.Write(id);
                    w.Write(x.ClassId);
                    w.Write(x.Score);
                }
            }
        }
        File.Move(tmp, path, overwrite: true);
    }

    internal static EncodedTask ReadTask(string path)
    {
        try
        {
            using var r = new BinaryReader(File.OpenRead(path), new UTF8Encoding(false));
            if (r.ReadString() != TaskMagic) throw new InvalidDataException("not a published task file");
            var name = r.ReadString();
            var kind = (TaskKind)r.ReadInt32();
            var metric = (PrimaryMetric)r.ReadInt32();
            var labels = new string[r.ReadInt32()];
            for (int i = 0; i < labels.Length; i++) labels[i] = r.ReadString();
            var encoder = new PretokenizedEncoder(r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), r.ReadInt32());
            int maxLength = r.ReadInt32();
            var splits = new List<EncodedExample>[2];
            for (int s = 0; s < 2; s++)
            {
                int n = r.ReadInt32();
                splits[s] = new List<EncodedExample>(n);
                for (int k = 0; k < n; k++)
                {
                    int len = r.ReadInt32();
                    var ids = new int[len];
                    var types = new int[len];
                    for (int i = 0; i < len; i++) ids[i] = r.ReadInt32();
                    for (int i = 0; i < len; i++) types[i] = r.ReadInt32();
                    splits[s].Add(new EncodedExample(ids, types, r.ReadInt32(), r.ReadSingle()));
                }
            }
            var dataset = new TaskDataset(name, kind, labels, metric, [], []);
            return new EncodedTask(dataset, encoder, maxLength, splits[0], splits[1]);
        }
        catch (EndOfStreamException ex)
        {
            throw new InvalidDataException($"published task file '{path}' is truncated", ex);
        }
    }

    /// <summary>A worker's stand-in for the tokenizer: the ids the model needs, and no tokenizing (the task arrives tokenized).</summary>
    private sealed class PretokenizedEncoder(int vocabSize, int padId, int clsId, int sepId, int maskId, int unkId) : ITextEncoder
    {
        public int VocabSize => vocabSize;
        public int PadId => padId;
        public int ClsId => clsId;
        public int SepId => sepId;
        public int MaskId => maskId;
        public int UnkId => unkId;
        public IReadOnlyList<int> Tokenize(string text) => throw new InvalidOperationException("a worker's task arrives tokenized; it has no tokenizer");
        public string IdToToken(int id) => $"#{id}";
        public bool IsSpecial(int id) => id == padId || id == clsId || id == sepId || id == maskId || id == unkId;
        public EncodedText Encode(string textA, string? textB, int maxLength) => throw new InvalidOperationException("a worker's task arrives tokenized; it has no tokenizer");
    }
}
