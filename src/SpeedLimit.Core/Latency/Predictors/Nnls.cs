namespace SpeedLimit.Latency.Predictors;

/// <summary>
/// Non-negative least squares, min ‖A·x − b‖² subject to x ≥ 0, by the Lawson–Hanson active-set
/// method on the normal equations (the problems here have a handful of columns).
/// </summary>
internal static class Nnls
{
    /// <param name="a">Row-major (rows, cols).</param>
    /// <param name="ridge">Added to the Gram diagonal, relative to its mean diagonal (keeps collinear columns solvable).</param>
    public static double[] Solve(double[] a, double[] b, int rows, int cols, double ridge = 1e-10)
    {
        if (a.Length != rows * cols || b.Length != rows) throw new ArgumentException("NNLS: matrix and vector sizes disagree");
        var gram = new double[cols * cols];
        var atb = new double[cols];
        for (int r = 0; r < rows; r++)
        {
            var row = a.AsSpan(r * cols, cols);
            for (int i = 0; i < cols; i++)
            {
                atb[i] += row[i] * b[r];
                for (int j = 0; j < cols; j++) gram[i * cols + j] += row[i] * row[j];
            }
        }
        double meanDiag = 0;
        for (int i = 0; i < cols; i++) meanDiag += gram[i * cols + i];
        meanDiag = Math.Max(meanDiag / cols, double.Epsilon);
        for (int i = 0; i < cols; i++) gram[i * cols + i] += ridge * meanDiag;
        return SolveNormal(gram, atb, cols);
    }

    /// <summary>NNLS given Gram = AᵀA and AᵀB directly.</summary>
    public static double[] SolveNormal(double[] gram, double[] atb, int n)
    {
        var x = new double[n];
        var passive = new bool[n];
        double tol = 1e-12 * Math.Max(1, atb.Max(Math.Abs));
        for (int outer = 0; outer < 4 * n + 10; outer++)
        {
            // Gradient of −½‖Ax−b‖²: w = Aᵀb − AᵀA·x.
            int best = -1; double bestW = tol;
            for (int j = 0; j < n; j++)
            {
                if (passive[j]) continue;
                double w = atb[j];
                for (int k = 0; k < n; k++) w -= gram[j * n + k] * x[k];
                if (w > bestW) { bestW = w; best = j; }
            }
            if (best < 0) break;
            passive[best] = true;
            for (int inner = 0; inner < 4 * n + 10; inner++)
            {
                var s = SolvePassive(gram, atb, passive, n);
                bool feasible = true;
                for (int j = 0; j < n; j++) if (passive[j] && s[j] <= 0) { feasible = false; break; }
                if (feasible) { x = s; break; }
                // Step from x toward s until the first passive coordinate hits zero, then drop it.
                double alpha = 1;
                for (int j = 0; j < n; j++)
                    if (passive[j] && s[j] <= 0) alpha = Math.Min(alpha, x[j] / Math.Max(x[j] - s[j], double.Epsilon));
                for (int j = 0; j < n; j++)
                {
                    if (!passive[j]) continue;
                    x[j] += alpha * (s[j] - x[j]);
                    if (x[j] <= 1e-15) { x[j] = 0; passive[j] = false; }
                }
            }
        }
        return x;
    }

    private static double[] SolvePassive(double[] gram, double[] atb, bool[] passive, int n)
    {
        var idx = Enumerable.Range(0, n).Where(j => passive[j]).ToArray();
        int m = idx.Length;
        var l = new double[m * m];
        // Cholesky of the passive block.
        for (int i = 0; i < m; i++)
            for (int j = 0; j <= i; j++)
            {
                double sum = gram[idx[i] * n + idx[j]];
                for (int k = 0; k < j; k++) sum -= l[i * m + k] * l[j * m + k];
                if (i == j) l[i * m + i] = Math.Sqrt(Math.Max(sum, 1e-300));
                else l[i * m + j] = sum / l[j * m + j];
            }
        var y = new double[m];
        for (int i = 0; i < m; i++)
        {
            double sum = atb[idx[i]];
            for (int k = 0; k < i; k++) sum -= l[i * m + k] * y[k];
            y[i] = sum / l[i * m + i];
        }
        var z = new double[m];
        for (int i = m - 1; i >= 0; i--)
        {
            double sum = y[i];
            for (int k = i + 1; k < m; k++) sum -= l[k * m + i] * z[k];
            z[i] = sum / l[i * m + i];
        }
        var s = new double[n];
        for (int i = 0; i < m; i++) s[idx[i]] = z[i];
        return s;
    }
}
