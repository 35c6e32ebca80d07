using System.Globalization;
using System.Text;

namespace SpeedLimit.Data;

/// <summary>
/// BERT's uncased accent stripping (NFD, then drop non-spacing marks) without ICU: the project runs
/// with InvariantGlobalization, where <see cref="string.Normalize()"/> leaves "é" as it is, so the
/// decompositions come from a generated table.
/// </summary>
internal static partial class AccentStripping
{
    private static readonly Lazy<Dictionary<char, string>> s_map = new(() =>
    {
        var map = new Dictionary<char, string>();
        foreach (var entry in Table.Split('\u0001', StringSplitOptions.RemoveEmptyEntries))
            map[entry[0]] = entry[1..];
        return map;
    });

    public static void AppendStripped(StringBuilder sb, char c)
    {
        if (c < 0x80) { sb.Append(c); return; }
        if (CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.NonSpacingMark) return;
        if (c >= 0xAC00 && c <= 0xD7A3) { AppendHangulJamo(sb, c); return; }
        if (s_map.Value.TryGetValue(c, out var stripped)) sb.Append(stripped);
        else sb.Append(c);
    }

    /// <summary>Unicode's algorithmic decomposition of a Hangul syllable into conjoining jamo (letters, not marks, so they stay).</summary>
    private static void AppendHangulJamo(StringBuilder sb, char c)
    {
        const int sBase = 0xAC00, lBase = 0x1100, vBase = 0x1161, tBase = 0x11A7, vCount = 21, tCount = 28;
        int s = c - sBase;
        sb.Append((char)(lBase + s / (vCount * tCount)));
        sb.Append((char)(vBase + s % (vCount * tCount) / tCount));
        if (s % tCount != 0) sb.Append((char)(tBase + s % tCount));
    }
}
