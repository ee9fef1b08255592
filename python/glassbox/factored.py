"""``FactoredMatrix``: a product ``A @ B`` kept as its two factors, as TransformerLens' (whose
``model.OV`` and ``model.QK`` are ones): a head's OV circuit ``W_V @ W_O`` is d_model × d_model
but of rank d_head, so its singular values, eigenvalues and norms come from the small factors
without forming it. Leading axes (layers, heads) broadcast; NumPy arrays in and out."""

from __future__ import annotations

from functools import cached_property

import numpy as np


def _array(x) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _t(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


class FactoredMatrix:
    """``A`` [..., ldim, mdim] times ``B`` [..., mdim, rdim], leading axes broadcast.

    ``AB`` forms the product, ``BA`` the small one (ldim = rdim); ``svd()`` / ``U``, ``S``,
    ``V`` (``AB = U · diag(S) · Vᵀ``, mdim singular values) and ``eigenvalues`` (of ``BA``,
    which are ``AB``'s non-zero ones), ``norm()`` (Frobenius), ``T``, indexing (``OV[layer,
    head]``; indexing the last two axes cuts rows of A and columns of B), ``@`` with arrays,
    vectors and other factored matrices, ``*`` by a scalar, ``get_corner``, ``collapse_l`` /
    ``collapse_r``, ``make_even``, ``unsqueeze``, ``pair`` — TransformerLens' API."""

    # NumPy defers `array @ factored` (and `*`) to this class instead of treating it as an array.
    __array_ufunc__ = None

    def __init__(self, A, B):
        A, B = _array(A), _array(B)
        if A.ndim < 2 or B.ndim < 2:
            raise ValueError(f"the factors are matrices (with leading axes), got shapes {A.shape} and {B.shape}")
        if A.shape[-1] != B.shape[-2]:
            raise ValueError(f"the factors must match on the inner axis: {A.shape} @ {B.shape}")
        self.ldim, self.mdim, self.rdim = A.shape[-2], A.shape[-1], B.shape[-1]
        try:
            lead = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except ValueError:
            raise ValueError(f"the factors' leading axes do not broadcast: {A.shape} and {B.shape}") from None
        #: (*leading, ldim, rdim)
        self.shape = (*lead, self.ldim, self.rdim)
        self.A = np.broadcast_to(A, (*lead, self.ldim, self.mdim))
        self.B = np.broadcast_to(B, (*lead, self.mdim, self.rdim))
        self.has_leading_dims = len(lead) > 0

    # --- products ----------------------------------------------------------------------------

    def __matmul__(self, other):
        if isinstance(other, FactoredMatrix):
            return (self @ other.A) @ other.B
        other = _array(other)
        if other.ndim < 2:
            return self.A @ (self.B @ other)
        if other.shape[-2] != self.rdim:
            raise ValueError(f"{self.shape} @ {other.shape}: the inner axes differ")
        # keep the smaller inner dimension
        if self.rdim > self.mdim:
            return FactoredMatrix(self.A, self.B @ other)
        return FactoredMatrix(self.AB, other)

    def __rmatmul__(self, other):
        other = _array(other)
        if other.shape[-1] != self.ldim:
            raise ValueError(f"{other.shape} @ {self.shape}: the inner axes differ")
        if other.ndim < 2:
            return (other @ self.A) @ self.B
        if self.ldim > self.mdim:
            return FactoredMatrix(other @ self.A, self.B)
        return FactoredMatrix(other, self.AB)

    def __mul__(self, scalar) -> "FactoredMatrix":
        scalar = _array(scalar)
        if scalar.size != 1:
            raise ValueError(f"* takes a scalar, not shape {scalar.shape}; use @ for products")
        return FactoredMatrix(self.A * scalar.reshape(()), self.B)

    __rmul__ = __mul__

    @property
    def AB(self) -> np.ndarray:
        """The product [..., ldim, rdim]."""
        return self.A @ self.B

    @property
    def BA(self) -> np.ndarray:
        """The factors the other way round [..., mdim, mdim] (a square product only)."""
        if self.ldim != self.rdim:
            raise ValueError(f"BA needs ldim = rdim; the shape is {self.shape}")
        return self.B @ self.A

    @property
    def T(self) -> "FactoredMatrix":
        return FactoredMatrix(_t(self.B), _t(self.A))

    # --- spectra -----------------------------------------------------------------------------

    @cached_property
    def _svd(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # AB = Ua Sa Vaᵀ · Ub Sb Vbᵀ = Ua (Sa Vaᵀ Ub Sb) Vbᵀ: the middle is at most mdim square.
        ua, sa, vha = np.linalg.svd(self.A, full_matrices=False)
        ub, sb, vhb = np.linalg.svd(self.B, full_matrices=False)
        middle = sa[..., :, None] * (vha @ ub) * sb[..., None, :]
        um, sm, vhm = np.linalg.svd(middle, full_matrices=False)
        return ua @ um, sm, _t(vhb) @ _t(vhm)

    def svd(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(U [..., ldim, k], S [..., k], V [..., rdim, k]) with ``AB = U diag(S) Vᵀ``, S
        descending (k = mdim where the factors are that wide)."""
        return self._svd

    @property
    def U(self) -> np.ndarray:
        return self._svd[0]

    @property
    def S(self) -> np.ndarray:
        return self._svd[1]

    @property
    def V(self) -> np.ndarray:
        return self._svd[2]

    @property
    def Vh(self) -> np.ndarray:
        """TransformerLens' alias, which has always been V (not its transpose)."""
        return self._svd[2]

    @property
    def eigenvalues(self) -> np.ndarray:
        """The eigenvalues of ``BA`` [..., mdim] (complex): ``AB``'s non-zero ones."""
        return np.linalg.eigvals(self.BA)

    def norm(self) -> np.ndarray:
        """The Frobenius norm of each matrix [...]."""
        return np.sqrt((self.S**2).sum(axis=-1))

    # --- shape -------------------------------------------------------------------------------

    def __getitem__(self, idx) -> "FactoredMatrix":
        idx = idx if isinstance(idx, tuple) else (idx,)
        n = len([i for i in idx if i is not None])
        lead = len(self.shape) - 2

        def keep(i):  # an int on a matrix axis keeps the axis (a 1-row or 1-column matrix)
            return slice(i, i + 1 if i != -1 else None) if isinstance(i, (int, np.integer)) else i

        if n <= lead:
            return FactoredMatrix(self.A[idx], self.B[idx])
        if n == lead + 1:
            idx = (*idx[:-1], keep(idx[-1]))
            return FactoredMatrix(self.A[idx], self.B[idx[:-1]])
        if n == lead + 2:
            rows, cols = keep(idx[-2]), keep(idx[-1])
            return FactoredMatrix(self.A[(*idx[:-2], rows)], self.B[(*idx[:-2], slice(None), cols)])
        raise ValueError(f"{idx} is too long an index for a factored matrix of shape {self.shape}")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def unsqueeze(self, k: int) -> "FactoredMatrix":
        """A new axis at ``k`` of both factors (k counts from the front, or from the end when
        negative)."""
        return FactoredMatrix(np.expand_dims(self.A, k), np.expand_dims(self.B, k))

    @property
    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        return self.A, self.B

    def get_corner(self, k: int = 3) -> np.ndarray:
        """The top-left k × k (every axis cut to k) of the product, formed from k rows and
        columns only."""
        corner = self.A[..., :k, :] @ self.B[..., :, :k]
        return corner[tuple(slice(k) for _ in range(corner.ndim))]

    def collapse_l(self) -> np.ndarray:
        """``diag(S) Vᵀ`` [..., k, rdim]: the product with its left factor orthonormal."""
        return self.S[..., :, None] * _t(self.V)

    def collapse_r(self) -> np.ndarray:
        """``U diag(S)`` [..., ldim, k]: the product with its right factor orthonormal."""
        return self.U * self.S[..., None, :]

    def make_even(self) -> "FactoredMatrix":
        """The same product with the singular values split evenly: U √S and √S Vᵀ."""
        root = np.sqrt(self.S)
        return FactoredMatrix(self.U * root[..., None, :], root[..., :, None] * _t(self.V))

    def __repr__(self) -> str:
        return f"FactoredMatrix: Shape({self.shape}), Hidden Dim({self.mdim})"
