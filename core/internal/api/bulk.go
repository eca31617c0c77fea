package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/rest"
)

// BulkPath is where a registration CSV is uploaded.
const BulkPath = "/service/lwm2m-agent/deviceRegistration/bulk"

// MaxBulkFile is the largest registration CSV accepted in one upload;
// bin/lwm2md register splits bigger files.
const MaxBulkFile = 10 << 20

// maxBulkBody leaves room for the multipart framing and other form
// fields around the file.
const maxBulkBody = MaxBulkFile + 1<<20

func tooLarge(w http.ResponseWriter) {
	rest.Error(w, http.StatusRequestEntityTooLarge, "general/Request Too Large",
		fmt.Sprintf("the CSV file exceeds %d MB; split it into several uploads (bin/lwm2md register does)", MaxBulkFile>>20))
}

// readBulkFile reads the form field "file" of a multipart upload,
// answering 400/413 itself. The file is held in memory (at most
// MaxBulkFile) so it can be read twice without a temporary file that
// would hold credentials and keys on disk.
func readBulkFile(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	mr, err := r.MultipartReader()
	if err != nil {
		rest.Error(w, http.StatusBadRequest, "lwm2m/Invalid Data", `send the CSV as multipart/form-data in the form field "file"`)
		return nil, false
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			rest.Error(w, http.StatusBadRequest, "lwm2m/Invalid Data", `the form has no field "file" with the CSV`)
			return nil, false
		}
		if err != nil {
			return nil, bodyError(w, err)
		}
		if part.FormName() != "file" {
			if _, err := io.Copy(io.Discard, part); err != nil {
				return nil, bodyError(w, err)
			}
			continue
		}
		data, err := io.ReadAll(io.LimitReader(part, MaxBulkFile+1))
		if err != nil {
			return nil, bodyError(w, err)
		}
		if len(data) > MaxBulkFile {
			tooLarge(w)
			return nil, false
		}
		return data, true
	}
}

func bodyError(w http.ResponseWriter, err error) bool {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		tooLarge(w)
		return false
	}
	rest.Error(w, http.StatusBadRequest, "general/Bad Request", "cannot read the multipart body: "+err.Error())
	return false
}

// bulkResponse is Cumulocity's bulk registration answer plus a result for
// every row.
type bulkResponse struct {
	NumberOfAll        int                  `json:"numberOfAll"`
	NumberOfCreated    int                  `json:"numberOfCreated"`
	NumberOfSuccessful int                  `json:"numberOfSuccessful"`
	NumberOfFailed     int                  `json:"numberOfFailed"`
	NumberOfExisting   int                  `json:"numberOfExisting"`
	FailedCreationList []failedCreation     `json:"failedCreationList"`
	Results            []platform.RowResult `json:"results"`
}

type failedCreation struct {
	Line          int    `json:"line"`
	DeviceID      string `json:"deviceId"`
	FailureReason string `json:"failureReason"`
}

func (s *server) bulkRegister(w http.ResponseWriter, r *http.Request) {
	data, ok := readBulkFile(w, r)
	if !ok {
		return
	}
	p := principal(r)
	res, err := s.p.BulkRegister(r.Context(), p.Tenant, p.User, bytes.NewReader(data))
	clear(data) // it held credentials and keys
	if err != nil {
		s.fail(w, r, "lwm2m", err)
		return
	}
	out := bulkResponse{
		NumberOfAll: len(res.Rows), NumberOfCreated: res.Created, NumberOfSuccessful: res.Created,
		NumberOfFailed: res.Failed, NumberOfExisting: res.Existing,
		FailedCreationList: []failedCreation{}, Results: res.Rows,
	}
	if out.Results == nil {
		out.Results = []platform.RowResult{}
	}
	for _, row := range res.Rows {
		if row.Status == platform.RowFailed {
			reason := row.Reason
			if row.Field != "" {
				reason = row.Field + ": " + reason
			}
			out.FailedCreationList = append(out.FailedCreationList, failedCreation{row.Line, row.Endpoint, reason})
		}
	}
	rest.JSON(w, http.StatusCreated, out)
}
