using SpeedLimit.Data;

namespace SpeedLimit.Tests.Data;

public class TabularReaderTests
{
    [Fact]
    public void TsvCsvAndJsonlGiveTheSameTask()
    {
        using var dir = new TempDir();
        var tsv = dir.File("t.tsv", "id\tq\tp\ty\n1\t\"quoted start\tsecond\t2\n2\tb\tc\t10\n3\td\te\t2\n");
        var csv = dir.File("t.csv", "id,q,p,y\n1,\"\"\"quoted start\",second,2\n2,b,c,10\r\n3,d,e,2\n");
        var jsonl = dir.File("t.jsonl", "{\"q\":\"\\\"quoted start\",\"p\":\"second\",\"y\":2}\n{\"q\":\"b\",\"p\":\"c\",\"y\":10}\n\n{\"q\":\"d\",\"p\":\"e\",\"y\":\"2\"}\n");
        var options = new TabularTaskOptions { TextColumn = "q", TextPairColumn = "p", LabelColumn = "y" };
        foreach (var path in new[] { tsv, csv, jsonl })
        {
            var rows = TabularReader.ReadRows(path, options, requireLabel: true);
            Assert.Equal(["\"quoted start", "b", "d"], rows.Select(r => r.TextA));
            Assert.Equal(["second", "c", "e"], rows.Select(r => r.TextB));
            Assert.Equal(["2", "10", "2"], rows.Select(r => r.Label));
        }
        var task = TabularReader.LoadTask("mine", tsv, tsv, null, options);
        Assert.Equal(["2", "10"], task.LabelNames); // integer labels in numeric order
        Assert.Equal([0, 1, 0], task.Train.Select(e => e.ClassId));
    }

    [Fact]
    public void CsvQuotedFieldsMaySpanLinesAndHoldCommas()
    {
        using var dir = new TempDir();
        var csv = dir.File("m.csv", "text,label\n\"a, b\nc\",pos\nplain,neg\nmore,pos\nlast,neg");
        var rows = TabularReader.ReadRows(csv, new TabularTaskOptions(), requireLabel: true);
        Assert.Equal(["a, b\nc", "plain", "more", "last"], rows.Select(r => r.TextA));
        Assert.Equal(4, rows[1].Line);
        var task = TabularReader.LoadTask("m", csv, null, null, new TabularTaskOptions { CarvedDevFraction = 0.5 });
        Assert.Equal(["neg", "pos"], task.LabelNames);
        Assert.True(task.DevCarvedFromTrain);
        Assert.Equal([0, 1], task.Dev.Select(e => e.ClassId).Order()); // one of each class
        Assert.Equal(2, task.Train.Count);
    }

    [Fact]
    public void ErrorsNameFileAndLine()
    {
        using var dir = new TempDir();
        var o = new TabularTaskOptions();
        var missingCol = dir.File("a.tsv", "sentence\tlabel\nx\t1\n");
        Assert.Contains("'text'", Assert.Throws<InvalidDataException>(() => TabularReader.ReadRows(missingCol, o, true)).Message);
        var badJson = dir.File("b.jsonl", "{\"text\":\"a\",\"label\":1}\n{oops\n");
        Assert.Contains($"{badJson}:2:", Assert.Throws<InvalidDataException>(() => TabularReader.ReadRows(badJson, o, true)).Message);
        var noLabel = dir.File("c.jsonl", "{\"text\":\"a\"}\n");
        Assert.Contains($"{noLabel}:1:", Assert.Throws<InvalidDataException>(() => TabularReader.ReadRows(noLabel, o, true)).Message);
        var open = dir.File("d.csv", "text,label\n\"never closed,1\n");
        Assert.Contains($"{open}:2:", Assert.Throws<InvalidDataException>(() => TabularReader.ReadRows(open, o, true)).Message);
        var ragged = dir.File("e.csv", "text,label\na,1\nb,1,extra\n");
        Assert.Contains($"{ragged}:3:", Assert.Throws<InvalidDataException>(() => TabularReader.ReadRows(ragged, o, true)).Message);
        var train = dir.File("train.tsv", "text\tlabel\na\tx\nb\ty\n");
        var dev = dir.File("dev.tsv", "text\tlabel\na\tx\nb\tz\n");
        Assert.Contains($"{dev}:3:", Assert.Throws<InvalidDataException>(() => TabularReader.LoadTask("t", train, dev, null, o)).Message);
        var reg = new TabularTaskOptions { Kind = TaskKind.Regression };
        Assert.Contains($"{train}:2:", Assert.Throws<InvalidDataException>(() => TabularReader.LoadTask("t", train, null, null, reg)).Message);
        Assert.Throws<UserInputException>(() => TabularReader.ReadRows(dir.File("f.xlsx", "x"), o, true));
        Assert.Throws<FileNotFoundException>(() => TabularReader.ReadRows(Path.Combine(dir.Path, "none.tsv"), o, true));
    }
}
