/* Component-tree boxes: the CPU kernel of camjax/component_tree.py (compiled on first use). */
#include <stdlib.h>
#include <string.h>

typedef struct { float c; int j; } Cut;
typedef struct { int area; int first; int root; } Item;

static int cmp_cut(const void* a, const void* b) {
  const Cut* x = (const Cut*)a; const Cut* y = (const Cut*)b;
  if (x->c > y->c) return -1;
  if (x->c < y->c) return 1;
  return x->j - y->j;
}

static int cmp_item(const void* a, const void* b) {
  const Item* x = (const Item*)a; const Item* y = (const Item*)b;
  if (x->area != y->area) return x->area > y->area ? -1 : 1;
  return x->first - y->first;
}

static inline int find(int* parent, int p) {
  while (parent[p] != p) { parent[p] = parent[parent[p]]; p = parent[p]; }
  return p;
}

/* Number of sorted (descending) cuts c[k] > x, exact; the bucket table only picks the
   starting point of the two correcting walks, so rounding in the bucket index is harmless. */
static inline int level_of(float x, const Cut* cs, int T, int nfin0, float lo, float hi,
                           float inv_w, int K, const int* table) {
  if (x != x || x < lo) return T;
  if (x >= hi) { int k = nfin0; while (k < T && cs[k].c > x) ++k; return k; }
  int b = (int)((x - lo) * inv_w);
  if (b < 0) b = 0;
  if (b >= K) b = K - 1;
  int k = table[b];
  while (k > 0 && !(cs[k - 1].c > x)) --k;
  while (k < T && cs[k].c > x) ++k;
  return k;
}

typedef struct { int area, first, x0, y0, x1, y1, pos, pad; } Node;

/* vals [B,H,W], cuts [B,T]; boxes [B,T,M,4] int32, valid [B,T,M] uint8 (zeroed by caller).
   Kept at threshold j: vals >= cuts[j]. Returns 0, or -1 when out of memory. */
int component_tree_boxes(const float* vals, const float* cuts, int B, int H, int W, int T,
                         int M, int conn, int* boxes, unsigned char* valid) {
  const int N = H * W, K = 4 * T + 16, WP = W + 2, NP = (H + 2) * (W + 2);
  /* parent and node live on a grid padded by one pixel of "never kept" (-1), so the
     neighbour loop needs no bounds checks */
  /* 8-neighbours in ring order N, NE, E, SE, S, SW, W, NW; 4-neighbours N, E, S, W */
  const int RING[8] = {-WP, -WP + 1, 1, WP + 1, WP, WP - 1, -1, -WP - 1};
  const int CROSS[4] = {-WP, 1, WP, -1};
  int* buf = (int*)malloc(sizeof(int) * ((size_t)N * 4 + (size_t)NP + (size_t)T + 2 + (size_t)K));
  Node* node = (Node*)malloc(sizeof(Node) * (size_t)NP);
  Cut* cs = (Cut*)malloc(sizeof(Cut) * (size_t)(T > 0 ? T : 1));
  Item* items = (Item*)malloc(sizeof(Item) * (size_t)N);
  if (!buf || !node || !cs || !items) {
    free(buf); free(node); free(cs); free(items); return -1;
  }
  int *alive = buf, *lev = buf + N, *order = buf + 2 * N, *oyx = buf + 3 * N;
  int *parent = buf + 4 * N, *start = parent + NP, *table = start + T + 2;
  for (int b = 0; b < B; ++b) {
    const float* v = vals + (size_t)b * N;
    for (int j = 0; j < T; ++j) { cs[j].c = cuts[(size_t)b * T + j]; cs[j].j = j; }
    qsort(cs, T, sizeof(Cut), cmp_cut);
    /* finite cuts occupy sorted positions [nfin0, T); callers pass +inf for "keep nothing" */
    int nfin0 = 0;
    while (nfin0 < T && !(cs[nfin0].c < 3.0e38f)) ++nfin0;
    float hi = nfin0 < T ? cs[nfin0].c : 0.0f, lo = nfin0 < T ? cs[T - 1].c : 0.0f;
    float inv_w = hi > lo ? (float)K / (hi - lo) : 0.0f;
    for (int bk = 0, k = T; bk < K; ++bk) {
      float upper = lo + (hi - lo) * (float)(bk + 1) / (float)K;
      while (k > nfin0 && cs[k - 1].c <= upper) --k;
      table[bk] = k;
    }
    memset(start, 0, sizeof(int) * (T + 2));
    for (int p = 0; p < N; ++p) {
      int k = level_of(v[p], cs, T, nfin0, lo, hi, inv_w, K, table);
      lev[p] = k;
      start[k + 1]++;
    }
    for (int k = 0; k < T; ++k) start[k + 1] += start[k];
    for (int y = 0, p = 0; y < H; ++y)
      for (int x = 0; x < W; ++x, ++p)
        if (lev[p] < T) { int i = start[lev[p]]++; order[i] = p; oyx[i] = (y << 16) | x; }
    for (int k = T; k > 0; --k) start[k] = start[k - 1];
    start[0] = 0;
    for (int i = 0; i < NP; ++i) parent[i] = -1;
    int nalive = 0;
    for (int k = 0; k < T; ++k) {
      for (int i = start[k]; i < start[k + 1]; ++i) {
        int p = order[i], y = oyx[i] >> 16, x = oyx[i] & 0xffff, r = -1;
        int pp = (y + 1) * WP + x + 1;
        unsigned todo = 0;
        const int* offs = RING;
        if (conn == 8) {
          /* Present pixels that are adjacent were joined when the later of them entered,
             and ring-consecutive neighbours are adjacent: one pixel per run of present
             neighbours around the ring suffices (at most 4 finds instead of 8). */
          unsigned bits = 0;
          for (int d = 0; d < 8; ++d) bits |= (unsigned)(parent[pp + RING[d]] >= 0) << d;
          todo = bits & ~(((bits << 1) | (bits >> 7)) & 0xffu);
          if (bits == 0xffu) todo = 1u;
        } else {
          offs = CROSS;
          for (int d = 0; d < 4; ++d) todo |= (unsigned)(parent[pp + CROSS[d]] >= 0) << d;
        }
        for (; todo; todo &= todo - 1) {
          int q = pp + offs[__builtin_ctz(todo)], pq = parent[q];
          if (pq == r) continue;
          int rq = find(parent, q);
          if (rq == r) continue;
          if (r < 0) {  /* join the first neighbouring component: no singleton needed */
            Node* n = node + rq;
            r = rq; parent[pp] = r; n->area += 1;
            if (p < n->first) n->first = p;
            if (x < n->x0) n->x0 = x;
            if (x > n->x1) n->x1 = x;
            if (y < n->y0) n->y0 = y;
            if (y > n->y1) n->y1 = y;
            continue;
          }
          /* union by size keeps the trees shallow; `first` carries the raster-first pixel */
          int big = node[r].area >= node[rq].area ? r : rq, small = big == r ? rq : r;
          Node *nb = node + big, *ns = node + small;
          parent[small] = big; nb->area += ns->area;
          if (ns->first < nb->first) nb->first = ns->first;
          if (ns->x0 < nb->x0) nb->x0 = ns->x0;
          if (ns->y0 < nb->y0) nb->y0 = ns->y0;
          if (ns->x1 > nb->x1) nb->x1 = ns->x1;
          if (ns->y1 > nb->y1) nb->y1 = ns->y1;
          int last = alive[--nalive];
          alive[ns->pos] = last; node[last].pos = ns->pos;
          r = big;
        }
        if (r < 0) {
          Node* n = node + pp;
          parent[pp] = pp; n->area = 1; n->first = p;
          n->x0 = n->x1 = x; n->y0 = n->y1 = y;
          n->pos = nalive; alive[nalive++] = pp;
        }
      }
      int j = cs[k].j;
      int* out = boxes + ((size_t)b * T + j) * (size_t)M * 4;
      unsigned char* ok = valid + ((size_t)b * T + j) * (size_t)M;
      if (k > 0 && start[k] == start[k + 1]) {
        /* nothing entered: same components as at the previous cut */
        int jp = cs[k - 1].j;
        memcpy(out, boxes + ((size_t)b * T + jp) * (size_t)M * 4, sizeof(int) * 4 * (size_t)M);
        memcpy(ok, valid + ((size_t)b * T + jp) * (size_t)M, (size_t)M);
        continue;
      }
      for (int i = 0; i < nalive; ++i) {
        int r = alive[i];
        items[i].area = node[r].area; items[i].first = node[r].first; items[i].root = r;
      }
      if (nalive > 32) {
        qsort(items, nalive, sizeof(Item), cmp_item);
      } else {  /* the usual handful of components: insertion sort beats qsort's calls */
        for (int i = 1; i < nalive; ++i) {
          Item it = items[i];
          int h = i;
          while (h > 0 && cmp_item(&it, &items[h - 1]) < 0) { items[h] = items[h - 1]; --h; }
          items[h] = it;
        }
      }
      int m = nalive < M ? nalive : M;
      for (int i = 0; i < m; ++i) {
        Node* n = node + items[i].root;
        out[4 * i] = n->x0; out[4 * i + 1] = n->y0; out[4 * i + 2] = n->x1; out[4 * i + 3] = n->y1;
        ok[i] = 1;
      }
    }
  }
  free(buf); free(node); free(cs); free(items);
  return 0;
}
