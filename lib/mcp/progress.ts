// Image pulls can outlast a client's request timeout: when the client asked
// for progress (a progressToken), report the bytes pulled so far, which
// lets clients that reset their timeout on progress wait for big images.
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { ServerNotification, ServerRequest } from "@modelcontextprotocol/sdk/types.js";
import type { PullProgress } from "../images/cache.js";

export function pullProgress(
  image: string | undefined,
  extra: RequestHandlerExtra<ServerRequest, ServerNotification>,
): ((p: PullProgress) => void) | undefined {
  const progressToken = extra._meta?.progressToken;
  if (!image || progressToken === undefined) return undefined;
  const done = new Map<string, number>();
  let reported = 0;
  return (p) => {
    done.set(p.layer, p.bytesDone);
    let progress = 0;
    for (const bytes of done.values()) progress += bytes;
    if (progress <= reported) return; // progress must grow with each notification
    reported = progress;
    const message = `pulling ${image}: ${p.count} layer(s), ${(progress / 1048576).toFixed(1)} MiB so far`;
    void extra.sendNotification({ method: "notifications/progress", params: { progressToken, progress, message } }).catch(() => {});
  };
}
