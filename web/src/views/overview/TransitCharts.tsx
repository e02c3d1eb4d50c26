import {
  Bar,
  BarChart,
  Cell,
  Legend,
  Pie,
  PieChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";
import type { GroupCount } from "../../api/types";

const PQ = "#1f7a4d";
const CLASSICAL = "#b3261e";

/**
 * Handshakes by key-exchange group (bar) and post-quantum versus classical (pie). The
 * numbers are also in the text and the table beside, for screen readers.
 */
export default function TransitCharts({ groups }: { groups: GroupCount[] }) {
  const pq = groups.filter((g) => g.postQuantum).reduce((n, g) => n + g.count, 0);
  const classical = groups.filter((g) => !g.postQuantum).reduce((n, g) => n + g.count, 0);
  const split = [
    { name: "post-quantum", value: pq, color: PQ },
    { name: "classical", value: classical, color: CLASSICAL },
  ].filter((slice) => slice.value > 0);
  return (
    <div className="charts">
      <figure>
        <figcaption>Handshakes by group</figcaption>
        <ResponsiveContainer width="100%" height={200}>
          <BarChart data={groups} margin={{ left: 0, right: 8 }}>
            <XAxis dataKey="group" tick={{ fontSize: 11 }} />
            <YAxis allowDecimals={false} width={40} />
            <Tooltip />
            <Bar dataKey="count" name="handshakes" isAnimationActive={false}>
              {groups.map((g) => (
                <Cell key={g.group} fill={g.postQuantum ? PQ : CLASSICAL} />
              ))}
            </Bar>
          </BarChart>
        </ResponsiveContainer>
      </figure>
      <figure>
        <figcaption>Post-quantum versus classical</figcaption>
        <ResponsiveContainer width="100%" height={200}>
          <PieChart>
            <Pie data={split} dataKey="value" nameKey="name" outerRadius={70} isAnimationActive={false} label>
              {split.map((s) => (
                <Cell key={s.name} fill={s.color} />
              ))}
            </Pie>
            <Tooltip />
            <Legend />
          </PieChart>
        </ResponsiveContainer>
      </figure>
      <table className="sr-only">
        <caption>Handshakes by group</caption>
        <tbody>
          {groups.map((g) => (
            <tr key={g.group}>
              <th scope="row">{g.group}</th>
              <td>{g.count}</td>
              <td>{g.postQuantum ? "post-quantum" : "classical"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
